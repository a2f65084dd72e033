"""Peak memory of ser-predict on one long recording against one short clip.

    python benchmarks/long_files.py [--minutes 10] [--model cnn_gru]

Runs ``ser-predict`` (one process each, as a user would) on a 10-second clip and on a
recording of ``--minutes`` minutes, both synthetic speech at 16 kHz, with an untrained
checkpoint in ser's format (same compute as a trained one): the long one in 10 s windows (the
default) and, as the baseline, in one window of its whole length (how it was scored before
windows). Prints each one's peak resident memory and wall time, and the ratios to the short clip. Scoring in windows (``--window``, 10 s)
keeps the long file's cost at a batch of windows beyond its decoded samples (3.8 MB a
minute at 16 kHz in float32), instead of one forward pass over the whole recording.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hydra.utils import instantiate

from common import REPO, compose, machine, save_checkpoint

RATE = 16000
MEASURE = ("import resource, runpy, sys; sys.argv = ['ser-predict', *sys.argv[1:]];"
           "code = 0\ntry: runpy.run_module('ser.serving.predict', run_name='__main__')\n"
           "except SystemExit as done: code = done.code or 0\n"
           "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Synthetic speech of any length: the synthetic corpus's voices, clip after clip."""
    from ser.data.synthetic import PROSODY, make_voice, synthesize

    rng, pieces, total = np.random.default_rng(seed), [], 0
    while total < seconds * RATE:
        emotion = list(PROSODY)[len(pieces) % len(PROSODY)]
        pieces.append(synthesize(make_voice(len(pieces) % 7, 0), emotion, rng, RATE))
        total += len(pieces[-1])
    return np.concatenate(pieces)[: int(seconds * RATE)]


def predict_once(ckpt: Path, wav: Path, window: float = 10.0) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, windows scored) of one ser-predict process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURE, "--ckpt", str(ckpt), str(wav), "--window", str(window)], cwd=REPO,
                          capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    peak = int(next(line.split()[1] for line in proc.stderr.splitlines() if line.startswith("peak_kib")))
    return peak / 1024, seconds, len(json.loads(proc.stdout.splitlines()[-1])["windows"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", default="cnn_gru")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        save_checkpoint(instantiate(compose([f"model={args.model}"]).model).eval(), work / "model.ckpt")
        short, long = work / "short.wav", work / "long.wav"
        sf.write(short, speech_like(10, 0), RATE, subtype="PCM_16")
        sf.write(long, speech_like(60 * args.minutes, 1), RATE, subtype="PCM_16")
        minutes = f"{args.minutes:g} min"
        rows = {"10 s": predict_once(work / "model.ckpt", short),
                f"{minutes}, 10 s windows": predict_once(work / "model.ckpt", long),
                f"{minutes}, one window (baseline)": predict_once(work / "model.ckpt", long, window=1e9)}
    short_mib, short_s, _ = rows["10 s"]
    print("\n| file | windows | peak RSS MiB | x 10 s | wall s |\n|---|---:|---:|---:|---:|")
    for name, (mib, seconds, count) in rows.items():
        print(f"| {name} | {count} | {mib:.0f} | {mib / short_mib:.2f} | {seconds:.1f} |")
    windowed, whole = (rows[k][0] for k in list(rows)[1:])
    print(f"\npeak memory of the long file / the 10 s clip: {windowed / short_mib:.2f}x in windows, "
          f"{whole / short_mib:.2f}x in one window (audio {60 * args.minutes / 10:.0f}x longer)")
    print(f"machine: {machine()}; model={args.model}, untrained checkpoint, window 10 s")


if __name__ == "__main__":
    main()
