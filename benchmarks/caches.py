"""What the cache types (``data.waveform_cache``, ``data.feature_cache``) save and cost.

For each speech source (the built-in corpus: 16-bit files at 16 kHz, which an int16 cache holds
exactly; eSpeak NG actors in RAVDESS's layout: 48 kHz, resampled, so rounded to int16), a log-mel
model is trained with train.py's own code on all-float32 caches, then its test speakers are
scored from caches built three ways: all float32; int16 waveforms + float32 log-mel (the
default); int16 waveforms + float16 log-mel. Per way: build clips/s (decode, log-mel, per-speaker
normalisation), disk per hour of audio of each cache, test UAR, and against all-float32 the
largest difference of a probability and of a logit, and the share of predictions that change.

    python benchmarks/caches.py [--sources synthetic espeak] [--model cnn_gru] [--epochs 4]

ser-export refuses an export whose probabilities differ from the checkpoint's by more than
1e-4; a cache type that moves the test step's probabilities by more than that would break the
promise that the export answers as the test step scored.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from common import compose, machine
from generalisation import EMOTIONS, QUIET, SOURCES


WAYS = {"float32": ("float32", "float32"), "default": ("int16", "float32"), "float16": ("int16", "float16")}


def built_datamodule(cfg, module):
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data, emotions=module.classes, frontend=module.frontend, task=module.task,
                             num_workers=0)
    started = time.perf_counter()
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule, time.perf_counter() - started


@torch.no_grad()
def test_logits(module, datamodule) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = [], []
    for inputs, lengths, targets in datamodule.test_dataloader():
        logits.append(module(inputs, lengths).double().numpy())
        labels.append(targets.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def uar(logits: np.ndarray, labels: np.ndarray) -> float:
    predicted = logits.argmax(1)
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)]))


def probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def cache_sizes(cache_dir: Path) -> dict[str, int]:
    """Bytes of each kind of cache under ``cache_dir`` (waveforms, features, by_speaker)."""
    return {kind.name: sum(f.stat().st_size for f in kind.glob("*.rows")) for kind in cache_dir.iterdir()
            if kind.is_dir()}


def measure(source: str, model: str, epochs: int, work: Path) -> list[str]:
    from ser.module import SERModule
    from ser.train import run

    overrides = [*SOURCES[source](work), f"data.emotions=[{','.join(EMOTIONS)}]", f"model={model}",
                 f"trainer.max_epochs={epochs}", "seed=0", *QUIET]
    types = lambda way: [f"data.waveform_cache={WAYS[way][0]}", f"data.feature_cache={WAYS[way][1]}"]  # noqa: E731
    run(compose([*overrides, *types("float32"), f"paths.output_dir={work / 'run'}"]))
    module = SERModule.from_checkpoint(work / "run" / "checkpoints" / "last.ckpt").eval()
    rows, scored = [], {}
    for way in WAYS:
        cache_dir = work / f"cache-{way}"
        datamodule, seconds = built_datamodule(compose([*overrides, *types(way), f"data.cache_dir={cache_dir}"]),
                                               module)
        sizes = cache_sizes(cache_dir)
        samples = sizes["waveforms"] / (2 if WAYS[way][0] == "int16" else 4)
        per_hour = " / ".join(f"{sizes[k] / (samples / module.frontend.sample_rate / 3600) / 2**20:.0f}"
                              for k in ("waveforms", "features", "by_speaker") if k in sizes)
        logits, labels = scored[way] = test_logits(module, datamodule)
        reference = scored["float32"][0]
        probability = np.abs(probabilities(logits) - probabilities(reference)).max()
        rows.append(f"| {source} | {' + '.join(WAYS[way])} | {len(datamodule.clips) / seconds:.0f} | {per_hour} | "
                    f"{uar(logits, labels):.3f} | {probability:.1e} | {np.abs(logits - reference).max():.1e} | "
                    f"{np.mean(logits.argmax(1) != reference.argmax(1)):.1%} of {len(labels)} |")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--model", default="cnn_gru")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    print(machine())
    print(f"model={args.model}, {args.epochs} epochs, trained on float32 caches")
    print("| source | waveforms + log-mel | build clips/s | MiB per hour of audio (waveforms / log-mel / per "
          "speaker) | test UAR | largest probability difference | largest logit difference | predictions changed |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for source in args.sources:
        with tempfile.TemporaryDirectory() as work:
            for row in measure(source, args.model, args.epochs, Path(work)):
                print(row, flush=True)


if __name__ == "__main__":
    main()
