"""One epoch of CNN-GRU training, three ways, in one process:

  a. notebook 004's pipeline as published (``notebook004.py``: per-item features in __getitem__,
     every spectrogram padded/cropped to 160 frames, DataLoader defaults, its Base_CNN_GRU);
  b. ser: train.py's DataModule and LightningModule (config as composed by train.py);
  c. ser's network alone on the same batches, features pre-made and in memory, updated as b
     updates it (optimiser, gradient clipping, precision): the limit (an epoch of it after
     each epoch of b, so that both meet the same machine).

    python benchmarks/pipeline.py                     # CREMA-D-sized: data=synthetic_cremad
    python benchmarks/pipeline.py --speakers 24       # quicker: 24 speakers x 82 clips
    python benchmarks/pipeline.py --cache ~/.cache/ser-bench   # keep the synthetic corpus for next time

Prints seconds per epoch, speedup = a / b, efficiency = c / b, the test UAR of a and b after
the same number of epochs on the same speaker-independent split, the first (cache-cold)
epoch against a warm one, and the peak resident memory of the ser training run (c's
pre-made features, resident in the same process on a CPU run, are not counted).
"""

from __future__ import annotations

import argparse
import copy
import resource
import shutil
import tempfile
import time

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.fabric.utilities import move_data_to_device

import notebook004
from common import compose, machine, sync


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds = []

    def on_train_epoch_start(self, trainer, module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        sync()
        self.seconds.append(time.perf_counter() - self.start)


class NetworkAlone(L.Callback):
    """c, interleaved with b: after each of b's epochs, one epoch of ser's network alone on
    the same batches, their features pre-made and in memory (the limit). The network is a copy
    taken before training and is updated as b updates it (b's optimiser, gradient clipping and
    precision): what c leaves out is the data path and the framework, not part of the update
    rule. Interleaved rather than run after b because a shared machine's speed drifts: each
    c epoch runs next to a b epoch."""

    def __init__(self, precision: str):
        self.half = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))
        self.seconds = []

    def on_train_start(self, trainer, module):
        if trainer.gradient_clip_val and trainer.gradient_clip_algorithm not in (None, "norm"):
            raise ValueError("the network-alone loop clips gradients by norm only, as ser's trainer configs do")
        device, start, dm = module.device, time.perf_counter(), trainer.datamodule
        self.peak_rss_before = peak_rss_gib()  # b's, before c's features join it in memory
        with torch.no_grad():
            batches = (dm.on_after_batch_transfer(move_data_to_device(batch, device), 0)  # as b receives them
                       for batch in dm.train_dataloader())
            self.batches = [(*module.frontend(inputs, lengths), labels) for inputs, lengths, labels in batches]
        # On a CPU run c's features sit in this process's memory beside b's from here on.
        self.host_gib = sum(t.nbytes for batch in self.batches for t in batch if t.device.type == "cpu") / 2**30
        self.net = copy.deepcopy(module.net).train()
        self.optimizer = instantiate(module.hparams.optimizer, params=self.net.parameters())
        self.clip_norm = trainer.gradient_clip_val
        self.setup_seconds = time.perf_counter() - start

    def on_train_epoch_end(self, trainer, module):
        rng = torch.random.get_rng_state(), torch.cuda.get_rng_state_all()  # b's draws stay b's
        autocast = torch.autocast(module.device.type, dtype=self.half or torch.float32, enabled=self.half is not None)
        start = time.perf_counter()
        for feats, frames, labels in self.batches:
            with autocast:
                loss = F.cross_entropy(self.net(feats, frames), labels)
            self.optimizer.zero_grad()
            loss.backward()
            if self.clip_norm:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip_norm)
            self.optimizer.step()
        sync()
        self.seconds.append(time.perf_counter() - start)
        torch.random.set_rng_state(rng[0])
        torch.cuda.set_rng_state_all(rng[1])


def run_ser(cfg, epochs: int):
    """b through Lightning as train.py runs it, with c interleaved: seconds of each epoch of b and
    of c, of the whole fit, b's test UAR, the DataModule and b's peak resident memory in GiB."""
    L.seed_everything(0, workers=True)
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data, frontend=module.frontend)
    timer, alone = EpochTimer(), NetworkAlone(cfg.trainer.precision)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer, alone], limit_val_batches=0,
                        accelerator="auto", devices=1, precision=cfg.trainer.precision,
                        gradient_clip_val=cfg.trainer.gradient_clip_val,
                        gradient_clip_algorithm=cfg.trainer.get("gradient_clip_algorithm"),
                        profiler=cfg.trainer.get("profiler"))  # +trainer.profiler=simple: where b's time goes
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)  # (builds the feature cache before the first epoch)
    fit = time.perf_counter() - start - alone.setup_seconds - sum(alone.seconds)  # b's part
    result = trainer.test(module, datamodule=dm, verbose=False)[0]
    # b's peak resident memory: the process's, less c's features where they were in it
    peak_rss = max(alone.peak_rss_before, peak_rss_gib() - alone.host_gib)
    return timer.seconds, alone.seconds, fit, result["test/uar"], dm, peak_rss


def split_of(dm, name: str) -> tuple[list[str], list[int]]:
    rows = [(c.path, dm.classes.index(c.emotion)) for c, s in zip(dm.clips, dm.assignment) if s == name]
    return [path for path, _ in rows], [label for _, label in rows]


def loading(dm) -> str:
    if dm.resident is not None:
        return "cache held on the device"
    return f"{dm.worker_count()} loader workers"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main():
    args = parse_args()
    corpus_dir = args.cache or tempfile.mkdtemp(prefix="ser-bench-")
    waveforms = tempfile.mkdtemp(prefix="ser-bench-waveforms-")  # always cold: the first epoch builds it
    try:
        benchmark(args, corpus_dir, waveforms)
    finally:  # a CREMA-D-sized corpus and its cache are 1.2 GB each
        shutil.rmtree(waveforms, ignore_errors=True)
        if not args.cache:
            shutil.rmtree(corpus_dir, ignore_errors=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speakers", type=int, default=91, help="91: CREMA-D's size (7,442 clips)")
    parser.add_argument("--epochs", type=int, default=2, help="of each; more gives steadier timings")
    parser.add_argument("--cache", help="keep the synthetic corpus here for the next run (the waveform "
                                         "cache is always built afresh: its build is the cold epoch)")
    parser.add_argument("overrides", nargs="*", help="extra train.py overrides for b, e.g. trainer=gpu")
    return parser.parse_intermixed_args()  # overrides may come before or after the options


def benchmark(args, corpus_dir: str, waveforms: str):
    size = [] if args.speakers == 91 else [f"data.corpus.num_speakers={args.speakers}", "data.corpus.num_clips=null"]
    cfg = compose(["data=synthetic_cremad", "model=cnn_gru", f"paths.cache_dir={corpus_dir}",
                   f"data.cache_dir={waveforms}", "paths.output_dir=.", "seed=0",
                   f"trainer.max_epochs={args.epochs}", *size, *args.overrides])  # (the lr schedule's length)

    dm = instantiate(cfg.data)  # no front end: 16 kHz waveforms, what the notebook's pipeline reads
    start = time.perf_counter()
    dm.corpus.prepare(dm.root)
    synthesis = time.perf_counter() - start
    start = time.perf_counter()
    dm.prepare_data()  # decode + resample into the waveform cache: the cold part
    cache_build = time.perf_counter() - start
    dm.setup()
    hours = sum(dm.datasets["train"].lengths()) / dm.sample_rate / 3600
    print(f"corpus: {len(dm.clips)} clips, {args.speakers} speakers, {hours:.2f} h of training audio "
          f"({synthesis:.0f} s to synthesise, not counted); split {dm.split_counts()}", flush=True)

    ser_epochs, limit, fit, ser_uar, dm_b, rss = run_ser(cfg, args.epochs)
    # Cold: the waveform cache's build, everything fit does before and between epochs (the
    # feature cache's build among it) and the first epoch.
    cold = cache_build + (fit - sum(ser_epochs)) + ser_epochs[0]
    notebook_epochs, notebook_uar = notebook004.train_and_test(split_of(dm, "train"), split_of(dm, "test"), args.epochs)

    # The fastest epoch of each (timeit's convention: a shared machine's noise only adds
    # time); ser's first epoch is left out, it is the cold one.
    notebook, ser, alone = min(notebook_epochs), min(ser_epochs[1:] or ser_epochs), min(limit)
    print(f"\n| pipeline | s / epoch | test UAR after {args.epochs} epochs |\n|---|---:|---:|")
    print(f"| a. notebook 004 as published | {notebook:.1f} | {notebook_uar:.3f} |")
    print(f"| b. ser | {ser:.1f} | {ser_uar:.3f} |")
    print(f"| c. ser's network alone | {alone:.1f} | |")
    print(f"\nspeedup a/b = {notebook / ser:.2f}x   efficiency c/b = {alone / ser:.2f}   "
          f"first epoch with a cold cache / warm = {cold / ser:.2f} "
          f"(waveform cache build {cache_build:.0f} s)   peak RSS of b = {rss:.2f} GiB")
    print(f"machine: {machine()}; precision {cfg.trainer.precision}, batch {cfg.data.batch_size}, "
          f"{loading(dm_b)}; fastest epoch of {args.epochs} (ser: of its warm ones)")


if __name__ == "__main__":
    main()
