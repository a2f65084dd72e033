"""The eGeMAPS functionals cache (the default recipe's frozen stage) built with one openSMILE
thread against one per core, on the same clips of the built-in corpus, each timed as the
cache build computes it (batches of 64, longest-first padding removed).

    python benchmarks/functionals.py [--clips 320]

Prints clips/s of each and the speedup (all cores / one).
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.nn.utils.rnn import pad_sequence

from common import compose, machine


def clips_per_second(frontend, waves: list[torch.Tensor]) -> float:
    stage = frontend.frozen_stage()
    began = time.perf_counter()
    for start in range(0, len(waves), stage.batch_size):
        chunk = waves[start : start + stage.batch_size]
        stage.compute(pad_sequence(chunk, batch_first=True), torch.tensor([len(w) for w in chunk]))
    return len(waves) / (time.perf_counter() - began)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=320)
    args = parser.parse_args()
    from hydra.utils import instantiate

    from ser.data.audio import load_mono

    cfg = compose([])
    corpus = instantiate(cfg.data.corpus)
    corpus.prepare(cfg.data.root)
    paths = [c.path for c in corpus.scan(cfg.data.root)[0]][: args.clips]
    waves = [torch.from_numpy(load_mono(p, 16000)) for p in paths]
    cores = len(os.sched_getaffinity(0))
    print(f"# eGeMAPS functionals of {len(waves)} built-in clips; {machine()}")
    rates = {}
    for threads in (1, cores):
        frontend = instantiate({**cfg.features, "threads": threads})
        clips_per_second(frontend, waves[:8])  # warm: openSMILE's instances made
        rates[threads] = clips_per_second(frontend, waves)
        print(f"{threads} thread(s): {rates[threads]:.1f} clips/s")
    print(f"speedup, {cores} threads / 1: {rates[cores] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
