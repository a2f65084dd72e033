"""What the cache types save and cost: the waveform cache (16-bit files at the model's rate
as int16, any other as float32, both exact) and a float16 feature cache (``data.feature_cache``).

For each speech source (the built-in corpus: 16-bit files at 16 kHz; eSpeak NG actors in
RAVDESS's layout: 48 kHz, so resampled and stored as float32), a log-mel model is trained with
train.py's own code on float32 features, then its test speakers are scored from caches built
with each feature type. Per type: build clips/s (decode, log-mel, per-speaker normalisation),
disk per hour of audio of each cache and of the waveforms as float32, test UAR, and against
float32 the largest difference of a probability and of a logit, and the predictions changed.

    python benchmarks/caches.py [--sources synthetic espeak] [--model cnn_gru] [--epochs 4]

ser-export refuses an export whose probabilities differ from the checkpoint's by more than
1e-4; a feature type that moves the test step's probabilities by that much would break the
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
from generalisation import EMOTIONS, QUIET, SOURCES

from common import compose, machine

TYPES = ("float32", "float16")


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
    from ser.data.cache import WaveformCache
    from ser.experiment.train import run
    from ser.module import SERModule

    overrides = [*SOURCES[source](work), f"data.emotions=[{','.join(EMOTIONS)}]", f"model={model}",
                 f"trainer.max_epochs={epochs}", "seed=0", *QUIET]
    run(compose([*overrides, f"paths.output_dir={work / 'run'}"]))
    module = SERModule.from_checkpoint(work / "run" / "checkpoints" / "last.ckpt").eval()
    rows, scored = [], {}
    for kind in TYPES:
        cache_dir = work / f"cache-{kind}"
        datamodule, seconds = built_datamodule(compose([*overrides, f"data.feature_cache={kind}",
                                                        f"data.cache_dir={cache_dir}"]), module)
        sizes = cache_sizes(cache_dir)
        waveforms = WaveformCache.open([c.path for c in datamodule.clips], datamodule.sample_rate, cache_dir)
        hours = sum(map(waveforms.length, waveforms.offsets)) / datamodule.sample_rate / 3600
        per_hour = " / ".join(f"{size / hours / 2**20:.0f}" for size in
                              (sizes["waveforms"], 4 * hours * 3600 * datamodule.sample_rate, sizes["features"],
                               sizes.get("by_speaker", 0)))
        logits, labels = scored[kind] = test_logits(module, datamodule)
        reference = scored["float32"][0]
        probability = np.abs(probabilities(logits) - probabilities(reference)).max()
        rows.append(f"| {source} | {kind} | {len(datamodule.clips) / seconds:.0f} | {per_hour} | "
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
    print("| source | log-mel stored as | build clips/s | MiB per hour of audio: waveforms / as float32 / "
          "log-mel / per speaker | test UAR | largest probability difference | largest logit difference | predictions changed |")
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for source in args.sources:
        with tempfile.TemporaryDirectory() as work:
            for row in measure(source, args.model, args.epochs, Path(work)):
                print(row, flush=True)


if __name__ == "__main__":
    main()
