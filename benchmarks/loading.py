"""What taking one training batch costs the host thread that drives the model: from a loader
worker (how ser loads without ``data.cache_on_device``) against a gather from the cache held
in the device's memory (with it). A GPU step is bound by that thread, so this is its price.

    python benchmarks/loading.py                  # batches of 128 clips x 128 mels x ~100 frames
    python benchmarks/loading.py --batch-size 32

Workers are kept ahead (the thread sleeps between batches, as it would while the device
computes), so only the hand-over is timed. Prints the median and 90th percentile per batch
and each way's ratio to the worker hand-over; the gather runs on the GPU when there is one
(its kernels are queued, not waited for: the host's cost, as in training). On a machine
without a GPU the gather is the copy itself, done by the host: c is then not the host's
cost on a GPU, and ``data.cache_on_device=auto`` stays off there.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common import machine  # first: it puts this checkout's ser on the path

N_MELS, CLIPS = 128, 2048
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where the model would train


class Clips(Dataset):
    """Log-mel-shaped clips of 60-140 frames, made in the worker as a cache read would."""

    def __init__(self, frames):
        self.frames = frames

    def __len__(self):
        return 10**6

    def __getitem__(self, i):
        return torch.zeros(N_MELS, int(self.frames[i % CLIPS])), 0


def per_batch(next_batch, count: int) -> tuple[float, float]:
    seconds = []
    for _ in range(count):
        time.sleep(0.02)  # the device computes; workers get ahead
        start = time.perf_counter()
        next_batch()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds)), float(np.percentile(seconds, 90))


def from_workers(frames, batch_size: int, count: int, strategy: str):
    from ser.data.loading import pad_batch

    torch.multiprocessing.set_sharing_strategy(strategy)
    loader = DataLoader(Clips(frames), batch_size, num_workers=2, collate_fn=pad_batch, prefetch_factor=4,
                        pin_memory=DEVICE == "cuda")
    batches = iter(loader)
    for _ in range(10):
        next(batches)
    return per_batch(lambda: [t.to(DEVICE, non_blocking=True) for t in next(batches)], count)


def from_resident(frames, batch_size: int, count: int):
    from ser.data.cache import ResidentRows

    starts = np.concatenate([[0], np.cumsum(frames)[:-1]])
    resident = ResidentRows(torch.zeros(int(frames.sum()), N_MELS, device=DEVICE))
    rng = np.random.default_rng(0)

    def gather():
        pick = rng.integers(0, CLIPS, batch_size)
        lengths = torch.from_numpy(frames[pick])
        batch = (torch.from_numpy(starts[pick]).to(DEVICE), lengths.to(DEVICE), int(lengths.max()))
        resident.gather(*batch)
    for _ in range(10):
        gather()
    return per_batch(gather, count)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    frames = np.random.default_rng(0).integers(60, 141, CLIPS)
    ways = {"a. from a loader worker (file-descriptor sharing, the default)":
            from_workers(frames, args.batch_size, args.batches, "file_descriptor"),
            "b. from a loader worker, file-system sharing":
            from_workers(frames, args.batch_size, args.batches, "file_system"),
            "c. gathered from the cache held in memory (data.cache_on_device)":
            from_resident(frames, args.batch_size, args.batches)}
    base = next(iter(ways.values()))[0]
    print("\n| way | ms a batch (median) | p90 | / a |\n|---|---:|---:|---:|")
    for name, (median, p90) in ways.items():
        print(f"| {name} | {1000 * median:.2f} | {1000 * p90:.2f} | {median / base:.2f} |")
    print(f"\nbatch {args.batch_size} x {N_MELS} mels x 60-140 frames; machine: {machine()}")


if __name__ == "__main__":
    main()
