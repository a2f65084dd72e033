"""The exported model (onnxruntime) against the checkpoint (torch), per front end, on this machine:

  a. ser-predict's predict() with the checkpoint on torch (CheckpointModel);
  b. the same predict() with the export on onnxruntime (ExportedModel): the same files, windows
     and batches, so the ratio is the backends';

and each one's cold start: a new process from nothing to the first JSON line of
``ser-predict --ckpt`` / ``--model`` on one file (imports, loading, the first inference).

    python benchmarks/export.py                       # 48 clips of ~2.5 s per front end
    python benchmarks/export.py --models cnn_gru lstm --clips 96

Prints clips/s and real-time factor (seconds of compute per second of audio) of a and b, the
speedup a/b, the export's own time and both cold starts. Weights are random (untrained): the
same compute as trained ones. The encoder row is a wav2vec 2.0 base-sized model (95M parameters).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hydra.utils import instantiate

from common import REPO, compose, machine, save_checkpoint, timed

FRONT_ENDS = {  # row -> overrides; each front end with its default normalisation
    "log-mel, CNN-GRU (per speaker)": ["model=cnn_gru"],
    "log-mel, CNN (per utterance)": ["model=cnn", "features.normalize=utterance"],
    "MFCC, LSTM (per speaker)": ["model=lstm", "features=mfcc"],
    "eGeMAPS, MLP (per speaker)": ["model=egemaps_mlp"],
    "wav2vec 2.0 base (random weights)": ["model=hf"],
}


def encoder_folder(root: Path) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    folder = root / "wav2vec2-base-random"
    Wav2Vec2Model(Wav2Vec2Config()).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return folder


def clips(folder: Path, count: int) -> tuple[list[Path], float]:
    """``count`` clips of the built-in corpus's voices; their total seconds."""
    corpus = instantiate(compose(["data=synthetic", "data.corpus.num_speakers=4"]).data.corpus)
    corpus.prepare(folder)
    files = sorted(folder.rglob("*.wav"))[:count]
    return files, sum(sf.info(str(f)).duration for f in files)


def cold_start(flag: str, model: Path, file: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ser.serving.predict", flag, str(model), str(file)], cwd=REPO, check=True,
                   capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(FRONT_ENDS), choices=list(FRONT_ENDS), metavar="ROW")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from ser.frontends.normalize import SpeakerStatistics
    from ser.serving.export import export_module
    from ser.serving.predict import predict
    from ser.serving.runtime import CheckpointModel, ExportedModel

    root = Path(tempfile.mkdtemp(prefix="ser-export-bench-"))
    files, seconds = clips(root / "corpus", args.clips)
    print(f"# {machine()}\n# {len(files)} clips, {seconds:.0f} s of audio; fastest of {args.repeats} passes\n")
    print("| front end | a. checkpoint, torch: clips/s (RTF) | b. export, onnxruntime: clips/s (RTF) | "
          "speedup a/b | export s | cold start a / b, s |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in args.models:
        overrides = FRONT_ENDS[row] + ([f"features.name={encoder_folder(root)}"] if "wav2vec" in row else [])
        torch.manual_seed(0)
        module = instantiate(compose(overrides).model).eval()
        if module.frontend.speaker_normalizer() is not None:  # as training hands them over (a lone file uses them)
            width = module.frontend.pooled.mean.numel()
            module.frontend.pooled.remember(SpeakerStatistics(np.zeros(width), np.ones(width)), 1.0)
        ckpt = root / f"{len(overrides)}-{abs(hash(row))}.ckpt"
        save_checkpoint(module, ckpt)
        start = time.perf_counter()
        exported = export_module(module, root / f"export-{abs(hash(row))}")
        export_seconds = time.perf_counter() - start
        ways = {"a": CheckpointModel(module), "b": ExportedModel(exported)}
        took = {k: timed(lambda m=m: list(predict(m, files)), args.repeats) for k, m in ways.items()}
        cells = [f"{len(files) / took[k]:.1f} ({took[k] / seconds:.4f})" for k in ("a", "b")]
        cold = (cold_start("--ckpt", ckpt, files[0]), cold_start("--model", exported, files[0]))
        print(f"| {row} | {cells[0]} | {cells[1]} | {took['a'] / took['b']:.2f} | {export_seconds:.0f} | "
              f"{cold[0]:.1f} / {cold[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
