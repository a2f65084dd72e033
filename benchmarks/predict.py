"""ser-predict throughput on a folder of files, against a file-by-file loop and the limit:

  a. file by file: read a file, score it alone (a batch of one), the obvious script;
  b. ser-predict's ``predict()``: files decoded on threads a chunk ahead, batched by length;
  c. the model (front end + network) alone on the same batches, decoded and in memory: the limit.

    python benchmarks/predict.py                      # 12 speakers x 82 clips of ~2.5 s
    python benchmarks/predict.py --rate 48000         # files at 48 kHz (RAVDESS): resampled
    python benchmarks/predict.py --model resnet18 --batch-size 32

Prints clips/s of each, speedup b/a, efficiency c/b, and the wall time of the whole
``ser-predict`` command on the folder (start-up and checkpoint loading included). The
checkpoint is an untrained one in ser's format: same compute as a trained model.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
from hydra.utils import instantiate

from common import REPO, compose, machine, save_checkpoint


def make_folder(folder: Path, speakers: int, rate: int) -> list[Path]:
    """CREMA-D-like clips (data=synthetic_cremad's voices) written at ``rate``."""
    corpus = instantiate(compose(["data=synthetic_cremad", f"data.corpus.num_speakers={speakers}",
                                  "data.corpus.num_clips=null", f"data.corpus.sample_rate={rate}"]).data.corpus)
    corpus.prepare(folder)
    return sorted(folder.rglob("*.wav"))


def file_by_file(module, files: list[Path]) -> float:
    from ser.data.audio import load_mono

    device = module.device
    start = time.perf_counter()
    with torch.no_grad():
        for path in files:
            wave = torch.from_numpy(load_mono(path, module.sample_rate)).to(device)
            module(wave[None], torch.tensor([len(wave)], device=device)).softmax(-1).cpu()
    return time.perf_counter() - start


def streamed(module, files: list[Path], batch_size: int) -> float:
    from ser.serving.predict import predict
    from ser.serving.runtime import CheckpointModel

    start = time.perf_counter()
    for _ in predict(CheckpointModel(module), files, batch_size):
        pass
    return time.perf_counter() - start


def model_alone(module, files: list[Path], batch_size: int) -> float:
    from ser.data.audio import load_mono
    from ser.data.loading import pad_batch

    clips = sorted((load_mono(p, module.sample_rate) for p in files), key=len)
    batches = [pad_batch([(torch.from_numpy(c), 0) for c in clips[i : i + batch_size]])
               for i in range(0, len(clips), batch_size)]
    batches = [(waves.to(module.device), lengths.to(module.device)) for waves, lengths, _ in batches]
    start = time.perf_counter()
    with torch.no_grad():
        for waves, lengths in batches:
            module(waves, lengths).softmax(-1).cpu()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speakers", type=int, default=12)
    parser.add_argument("--rate", type=int, default=16000, help="sample rate the files are written at")
    parser.add_argument("--model", default="cnn_gru")
    parser.add_argument("--batch-size", type=int, default=16, help="ser-predict's default")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ser-predict-bench-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path):
    files = make_folder(work / "clips", args.speakers, args.rate)
    torch.manual_seed(0)
    module = instantiate(compose([f"model={args.model}"]).model).eval()
    save_checkpoint(module, work / "model.ckpt")
    module.to("cuda" if torch.cuda.is_available() else "cpu")  # as ser-predict's --device default
    seconds = sum(sf.info(p).duration for p in files)
    print(f"{len(files)} files, {seconds / 60:.1f} min of audio at {args.rate} Hz; model={args.model}", flush=True)

    # The faster of two passes of each (a shared machine's noise only adds time).
    alone = min(model_alone(module, files, args.batch_size) for _ in range(2))
    ours = min(streamed(module, files, args.batch_size) for _ in range(2))
    naive = min(file_by_file(module, files) for _ in range(2))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ser.serving.predict", "--ckpt", str(work / "model.ckpt"), str(work / "clips"),
                    "--batch-size", str(args.batch_size)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    command = time.perf_counter() - start

    n = len(files)
    print("\n| way | clips/s | x file by file |\n|---|---:|---:|")
    for name, s in (("a. file by file", naive), ("b. ser-predict (predict())", ours), ("c. model alone, clips decoded in memory", alone)):
        print(f"| {name} | {n / s:.1f} | {naive / s:.2f} |")
    print(f"\nspeedup b/a = {naive / ours:.2f}x   efficiency c/b = {alone / ours:.2f}   "
          f"whole `ser-predict` command: {command:.1f} s ({n / command:.1f} clips/s, start-up included)")
    print(f"machine: {machine()}; batch {args.batch_size}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
