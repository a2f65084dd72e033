"""One epoch of CNN-GRU training, three ways, in one process tree:

  a. the seed notebook's pipeline as published (per-item features in __getitem__, every
     spectrogram padded/cropped to 160 frames, DataLoader defaults), re-implemented here
     only as the baseline;
  b. ser: train.py's DataModule and LightningModule, cache warm;
  c. the model alone on pre-made feature tensors in memory: the limit.

    python benchmarks/pipeline.py                      # CREMA-D-sized: 91 speakers
    python benchmarks/pipeline.py --speakers 24        # quicker

Prints speedup = a / b and efficiency = c / b per epoch, the test UAR of a and b after the
same number of epochs on the same speaker-independent split, the cold (cache-building)
first epoch against a warm one, and peak resident memory.
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time

import lightning as L
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.transforms as T
from torch.utils.data import DataLoader, Dataset

from common import compose, machine


class SeedDataset(Dataset):
    """Seed 004's AudioDataset, with soundfile standing in for torchaudio.load (which needs
    torchcodec): decode, resample, mel, dB, min-max, masks and pad/crop per item."""

    def __init__(self, paths, labels, transform):
        self.paths, self.labels, self.transform = paths, labels, transform
        self.mel = T.MelSpectrogram(sample_rate=16000, n_fft=2048, hop_length=512, n_mels=128)
        self.db = T.AmplitudeToDB()

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, idx):
        samples, rate = sf.read(self.paths[idx], dtype="float32", always_2d=True)
        waveform = torch.from_numpy(samples.T.copy())
        if rate != 16000:
            waveform = T.Resample(rate, 16000)(waveform)
        if waveform.shape[0] > 1:
            waveform = waveform.mean(dim=0, keepdim=True)
        waveform = waveform - waveform.mean()
        if self.transform and random.random() < 0.5:
            waveform = T.Vol(gain=random.uniform(0.5, 1.5), gain_type="amplitude")(waveform)
        spec = self.db(self.mel(waveform))
        spec = (spec - spec.min()) / (spec.max() - spec.min() + 1e-6)
        if self.transform:
            if random.random() < 0.5:
                spec = T.FrequencyMasking(freq_mask_param=15)(spec)
            if random.random() < 0.5:
                spec = T.TimeMasking(time_mask_param=35)(spec)
        spec = F.pad(spec, (0, max(0, 160 - spec.shape[-1])))[:, :, :160]
        return spec.squeeze(0), torch.tensor(self.labels[idx])


def seed_collate(batch):
    specs, labels = zip(*batch)
    return torch.stack(specs), torch.stack(labels)


def uar(preds, labels, num_classes=6) -> float:
    recalls = [(preds[labels == c] == c).float().mean().item() for c in range(num_classes) if (labels == c).any()]
    return float(np.mean(recalls))


def run_seed(dm, epochs: int, batch_size: int, lr: float) -> tuple[float, float]:
    """Seconds per training epoch and test UAR of the seed pipeline (plain PyTorch loop)."""
    from ser.models.cnn_gru import CNNGRU

    def split(name):
        rows = [(c.path, c.emotion) for c, s in zip(dm.clips, dm.assignment) if s == name]
        return [p for p, _ in rows], [dm.classes.index(e) for _, e in rows]

    torch.manual_seed(0)
    model = CNNGRU(128, 6)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train = DataLoader(SeedDataset(*split("train"), True), batch_size, shuffle=True, collate_fn=seed_collate)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for specs, labels in train:
            loss = F.cross_entropy(model(specs, torch.full((len(specs),), 160)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    test = DataLoader(SeedDataset(*split("test"), False), batch_size, collate_fn=seed_collate)
    model.eval()
    preds, labels = [], []
    with torch.no_grad():
        for specs, y in test:
            preds.append(model(specs, torch.full((len(specs),), 160)).argmax(-1))
            labels.append(y)
    return float(np.mean(seconds)), uar(torch.cat(preds), torch.cat(labels))


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds = []

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        self.seconds.append(time.perf_counter() - self.start)


def run_ser(cfg, epochs: int) -> tuple[list[float], float, object, object]:
    from hydra.utils import instantiate

    L.seed_everything(0, workers=True)
    dm, module = instantiate(cfg.data), instantiate(cfg.model)
    timer = EpochTimer()
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], limit_val_batches=0,
                        accelerator="auto", devices=1)
    trainer.fit(module, datamodule=dm)
    result = trainer.test(module, datamodule=dm, verbose=False)[0]
    return timer.seconds, result["test/uar"], dm, module


def run_model_only(dm, module, epochs: int) -> float:
    """The network alone on the same batches, features pre-made and in memory."""
    device = module.device
    batches = []
    with torch.no_grad():
        for waves, lengths, labels in dm.train_dataloader():
            feats, frames = module.frontend(waves.to(device), lengths.to(device))
            batches.append((feats, frames, labels.to(device)))
    net = module.net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for feats, frames, labels in batches:
            loss = F.cross_entropy(net(feats, frames), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return float(np.mean(seconds))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speakers", type=int, default=91)
    parser.add_argument("--sentences", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="ser-bench-")
    overrides = ["model=cnn_gru", f"data.corpus.num_speakers={args.speakers}",
                 f"data.corpus.num_sentences={args.sentences}", f"data.batch_size={args.batch_size}",
                 f"data.num_workers={args.workers}", f"paths.cache_dir={cache}", "paths.output_dir=.", "seed=0"]
    cfg = compose(overrides)

    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    start = time.perf_counter()
    dm.corpus.prepare(dm.root)
    generation = time.perf_counter() - start
    start = time.perf_counter()
    dm.prepare_data()  # decode + resample into the cache: the cold part of a first epoch
    cache_build = time.perf_counter() - start
    dm.setup()
    print(f"corpus: {len(dm.clips)} clips, {args.speakers} speakers "
          f"({generation:.0f} s to synthesise, not counted); split {dm.split_counts()}", flush=True)

    ser_epochs, ser_uar, dm_b, module = run_ser(cfg, args.epochs)
    warm = float(np.mean(ser_epochs[1:] or ser_epochs))
    seed_epoch, seed_uar = run_seed(dm, args.epochs, args.batch_size, cfg.model.optimizer.lr)
    limit = run_model_only(dm_b, module, 1)
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2**20

    print(f"\n| pipeline | s / epoch | test UAR after {args.epochs} epochs |\n|---|---:|---:|")
    print(f"| a. seed notebook | {seed_epoch:.1f} | {seed_uar:.3f} |")
    print(f"| b. ser (warm cache) | {warm:.1f} | {ser_uar:.3f} |")
    print(f"| c. model alone | {limit:.1f} | |")
    print(f"\nspeedup a/b = {seed_epoch / warm:.2f}x   efficiency c/b = {limit / warm:.2f}   "
          f"cold first epoch (cache build + epoch) / warm = {(cache_build + warm) / warm:.2f}   "
          f"peak RSS = {rss:.2f} GiB")
    print(f"machine: {machine()}; batch {args.batch_size}, {args.workers} workers")


if __name__ == "__main__":
    main()
