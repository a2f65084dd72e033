"""ser-predict: emotion probabilities for audio files from a trained checkpoint.

    ser-predict --ckpt logs/train/runs/<run>/checkpoints/best.ckpt clip.wav more/ ...

Prints one JSON object per file: {"path": ..., "emotion": ..., "probs": {emotion: p}}.
Any sample rate and channel count is read (mixed to mono, resampled to the model's rate);
unreadable files are reported on stderr and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from ser.data.audio import BadAudio, load_mono
from ser.data.corpora import AUDIO_SUFFIXES
from ser.data.datamodule import pad_batch
from ser.errors import UserError
from ser.module import SERModule


def expand(inputs: list[str]) -> list[Path]:
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise UserError(f"{str(item)!r} is neither an audio file nor a folder")
    return files


def predict(module: SERModule, files: list[Path], batch_size: int = 16) -> Iterator[dict]:
    device = next(module.parameters()).device
    clips = []
    for path in files:
        try:
            clips.append((path, load_mono(path, module.sample_rate)))
        except BadAudio as err:
            print(f"skipped {path}: {err}", file=sys.stderr)
    clips.sort(key=lambda item: len(item[1]))  # similar lengths per batch: little padding
    module.eval()
    for start in range(0, len(clips), batch_size):
        chunk = clips[start : start + batch_size]
        waves, lengths, _ = pad_batch([(torch.from_numpy(w), 0) for _, w in chunk])
        with torch.no_grad():
            probs = module(waves.to(device), lengths.to(device)).softmax(-1).cpu()
        for (path, _), p in zip(chunk, probs):
            yield {"path": str(path), "emotion": module.classes[int(p.argmax())],
                   "probs": {c: round(float(v), 6) for c, v in zip(module.classes, p)}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ser-predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint written by train.py")
    parser.add_argument("inputs", nargs="+", help="audio files and/or folders (searched recursively)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        module = SERModule.from_checkpoint(args.ckpt).to(args.device)
        for row in predict(module, expand(args.inputs), args.batch_size):
            print(json.dumps(row), flush=True)
    except UserError as err:
        print(f"ser-predict: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
