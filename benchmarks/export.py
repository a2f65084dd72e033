"""The exported model (onnxruntime) against the checkpoint (torch), per front end, on this machine:

  a. ser-predict's predict() with the checkpoint on torch (CheckpointModel);
  b. the same predict() with the export on onnxruntime (ExportedModel): the same files, windows
     and batches, so the ratio is the backends';

each one's cold start: a new process from nothing to the first JSON line of
``ser-predict --ckpt`` / ``--model`` on one file (imports, loading, the first inference); and each
one's streaming latency: ``--stream`` with the default hop (one window of 10 s after another) on a
minute of speech arriving as a pipe delivers it, the delay from the read that brought a window's
last sample to that window's JSON line (the median over the windows).

    python benchmarks/export.py                       # 48 clips of ~2.5 s per front end
    python benchmarks/export.py --models "log-mel, CNN-GRU (per speaker)" --clips 96
    python benchmarks/export.py --parts               # and where predict()'s time goes

``--parts`` adds a second table: predict()'s parts timed alone on the same batches, a and b in turn
(decoding the files, which both share; the frozen stage a per-speaker model computes first, the log-mel
or functionals; the readout, which for a per-utterance model includes its front end).

Prints clips/s and real-time factor (seconds of compute per second of audio) of a and b (each
one's fastest round), b's speed over a's (the median over rounds of a's time over b's in the same
round), the export's own time, both cold starts and both stream delays. a and b take turns in
every round, each after a pause, so a drift of the machine's speed touches both alike. Weights are random (untrained): the same compute as trained ones. The
encoder rows are a wav2vec 2.0 base-sized model (95M parameters) and a Whisper tiny-sized encoder
(8M parameters, one 30 s window per clip).
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hydra.utils import instantiate

from common import REPO, compose, machine, paired_ratio, save_checkpoint, timed_side_by_side

BATCH = 16  # ser-predict's default batch
FRONT_ENDS = {  # row -> overrides; each front end with its default normalisation
    "log-mel, CNN-GRU (per speaker)": ["model=cnn_gru"],
    "log-mel, CNN (per utterance)": ["model=cnn", "features.normalize=utterance"],
    "MFCC, LSTM (per speaker)": ["model=lstm", "features=mfcc"],
    "eGeMAPS, MLP (per speaker)": ["model=egemaps_mlp"],
    "wav2vec 2.0 base (random weights)": ["model=hf"],
    "Whisper tiny (random weights; its log-mel in the graph)": ["model=hf"],
}


def encoder_folder(root: Path, family: str) -> Path:
    """A randomly initialised encoder saved as a checkpoint is: wav2vec 2.0 base, Whisper tiny."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperModel,
    )

    folder = root / f"{family}-random"
    if family == "whisper":  # tiny.en's sizes
        WhisperModel(WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                                   decoder_layers=1, num_mel_bins=80)).save_pretrained(folder)
        WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    else:
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


class Pipe(io.RawIOBase):
    """16-bit PCM delivered in the blocks ``ser-predict --stream`` reads, noting when each
    block's last byte arrived."""

    def __init__(self, pcm: bytes):
        self.pcm, self.sent, self.arrivals = pcm, 0, []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        block = self.pcm[self.sent : self.sent + (size if size >= 0 else len(self.pcm))]
        self.sent += len(block)
        self.arrivals.append((self.sent, time.perf_counter()))
        return block


def stream_delay(model, wave: np.ndarray, window_seconds: float = 10.0) -> float:
    """Median seconds from the arrival of a window's last sample to its readout (ser-predict's
    ``stream()``, default hop: the window)."""
    from ser.serving.predict import stream

    pipe = Pipe((np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes())
    size = int(window_seconds * model.sample_rate)
    delays = []
    for k, _ in enumerate(stream(model, pipe, window_seconds)):
        answered = time.perf_counter()
        last_byte = 2 * min((k + 1) * size, len(wave))
        delays.append(answered - next(t for sent, t in pipe.arrivals if sent >= last_byte))
    return statistics.median(delays)


def parts(ways: dict, files: list[Path], repeats: int) -> dict[str, list[float]]:
    """Seconds of each round's call of each part of predict() (see ``--parts``), by predict()'s own
    batching: decoding, and each way's stage (where it computes one) and readout."""
    from ser.data.audio import load_mono
    from ser.frontends.normalize import SpeakerStatistics
    from ser.serving.predict import _readouts, _stage_outputs

    rate = next(iter(ways.values())).sample_rate
    waves = [load_mono(f, rate) for f in files]  # one window each: the clips are shorter than a window
    calls = {"decode": lambda: [load_mono(f, rate) for f in files]}
    for name, model in ways.items():
        inputs, statistics = waves, None
        if model.reads == "stage":
            inputs = _stage_outputs(model, waves, BATCH)
            calls[f"{name} stage"] = lambda m=model: _stage_outputs(m, waves, BATCH)
        if model.per_speaker:
            statistics = SpeakerStatistics.of(rows.T for rows in inputs)
        calls[f"{name} readout"] = lambda m=model, x=inputs, s=statistics: _readouts(m, x, BATCH, s)
    return timed_side_by_side(calls, repeats)


def parts_row(row: str, rounds: dict[str, list[float]]) -> str:
    ms = {name: f"{1000 * min(times):.0f}" for name, times in rounds.items()}
    stage = (f"{ms['a stage']} / {ms['b stage']} | {paired_ratio(rounds['a stage'], rounds['b stage']):.2f}"
             if "a stage" in rounds else "- | -")
    return (f"| {row} | {ms['decode']} | {stage} | {ms['a readout']} / {ms['b readout']} | "
            f"{paired_ratio(rounds['a readout'], rounds['b readout']):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(FRONT_ENDS), choices=list(FRONT_ENDS), metavar="ROW")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--parts", action="store_true", help="also time predict()'s parts alone (a second table)")
    args = parser.parse_args()
    from ser.frontends.normalize import SpeakerStatistics
    from ser.serving.export import export_module
    from ser.serving.predict import predict
    from ser.serving.runtime import CheckpointModel, ExportedModel

    root = Path(tempfile.mkdtemp(prefix="ser-export-bench-"))
    files, seconds = clips(root / "corpus", args.clips)
    minute = np.concatenate([sf.read(f, dtype="float32")[0] for f in files])[: 60 * 16000]
    print(f"# {machine()}\n# {len(files)} clips, {seconds:.0f} s of audio; {args.repeats} rounds, a and b in turn\n")
    print("| front end | a. checkpoint, torch: clips/s (RTF) | b. export, onnxruntime: clips/s (RTF) | "
          "b / a | export s | cold start a / b, s | stream delay a / b, ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    split = []
    for row in args.models:
        family = "wav2vec2" if "wav2vec" in row else "whisper" if "Whisper" in row else None
        overrides = FRONT_ENDS[row] + ([f"features.name={encoder_folder(root, family)}"] if family else [])
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
        rounds = timed_side_by_side({k: lambda m=m: list(predict(m, files)) for k, m in ways.items()}, args.repeats)
        took = {k: min(v) for k, v in rounds.items()}
        cells = [f"{len(files) / took[k]:.1f} ({took[k] / seconds:.4f})" for k in ("a", "b")]
        cold = (cold_start("--ckpt", ckpt, files[0]), cold_start("--model", exported, files[0]))
        delay = [1000 * stream_delay(ways[k], minute) for k in ("a", "b")]
        print(f"| {row} | {cells[0]} | {cells[1]} | {paired_ratio(rounds['a'], rounds['b']):.2f} | {export_seconds:.0f} | "
              f"{cold[0]:.1f} / {cold[1]:.1f} | {delay[0]:.0f} / {delay[1]:.0f} |", flush=True)
        if args.parts:
            split.append(parts_row(row, parts(ways, files, args.repeats)))
    if split:
        print(f"\n| front end ({len(files)} clips, ms: fastest round) | decode (both) | stage a / b | b / a | "
              "readout a / b | b / a |\n|---|---:|---:|---:|---:|---:|")
        print("\n".join(split))


if __name__ == "__main__":
    main()
