"""A frozen encoder's training epoch: recomputing the encoder every step vs reading its cache;
and (``--tuning``) what each way of training an encoder costs.

    python benchmarks/encoders.py                        # every family, base size
    python benchmarks/encoders.py --families wavlm --clips 96
    python benchmarks/encoders.py --tuning               # probe / LoRA / full fine-tuning
    python benchmarks/encoders.py --tuning --encoders wavlm whisper-tiny.en

For each family (a randomly initialised base-size encoder saved as a real checkpoint is: no
weights can be downloaded here, and the compute is the same) the same run trains model=hf on
the same synthetic clips twice through the real Trainer: once with data.precompute_features
=false (the frozen encoder runs on every batch) and once from the states cache (built before
training, then read like the log-mel cache: one pread per clip, nothing held in memory, the
path whose resident memory benchmarks/loading.py measures). Printed: seconds per training
epoch after the first, both ways, their ratio, and the time to build the cache once.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from common import BASE_ENCODERS, base_encoder, compose, machine


class EpochTimer:
    """Seconds of each training epoch (the loop only: validation is off)."""

    def __init__(self):
        import lightning as L

        outer = self

        class Timer(L.Callback):
            def on_train_epoch_start(self, trainer, module):
                outer.start = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                outer.seconds.append(time.perf_counter() - outer.start)

        self.seconds: list[float] = []
        self.callback = Timer()


def epochs(family: str, clips: int, cached: bool, cache_dir: str, epochs_: int = 3) -> tuple[list[float], float]:
    """Per-epoch training seconds and the seconds spent preparing data (the cache build)."""
    import lightning as L
    from hydra.utils import instantiate

    speakers = 8
    cfg = compose(["model=hf", f"features.name={base_encoder(family)}", f"data.corpus.num_speakers={speakers}",
                   f"data.corpus.num_sentences={max(1, clips // (6 * speakers))}", "data.num_workers=0",
                   f"data.precompute_features={str(cached).lower()}", f"data.cache_dir={cache_dir}",
                   "data.batch_size=8"])
    torch.manual_seed(0)
    module = instantiate(cfg.model)
    datamodule = instantiate(cfg.data, emotions=module.classes, frontend=module.frontend)
    start = time.perf_counter()
    datamodule.prepare_data()
    datamodule.setup("fit")
    prepared = time.perf_counter() - start
    timer = EpochTimer()
    trainer = L.Trainer(max_epochs=epochs_, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[timer.callback])
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds, prepared


# --tuning: the three ways on one encoder, each a features override (the model is model=hf).
TUNINGS = {
    "frozen probe": ["features.freeze=all"],  # the encoder run without gradients every step (uncached)
    "LoRA (q, v; r 8)": ["features.adapter=lora"],
    "LoRA (q, v, feed-forward)": ["features.adapter=lora", "features.lora.feed_forward=true"],
    "full fine-tuning": ["features.freeze=conv"],  # the recipe of experiment=finetune_wavlm
}
REAL_WHISPER = "whisper-tiny.en"


def encoder_folder(name: str) -> Path:
    if name != REAL_WHISPER:
        return base_encoder(name)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from real_whisper import whisper_tiny_en

    return whisper_tiny_en()


def tuning_step(encoder: str, tuning: str, batch: int, seconds: float, steps: int) -> dict:
    """One way of training ``encoder``, in this (fresh) process: trainable parameters, the peak
    resident memory a training step adds (sampled every 2 ms), the median step time after one
    warm-up step, and the size of the checkpoint Lightning would write (weights the checkpoint
    keeps, AdamW's moments)."""
    import psutil
    from hydra.utils import instantiate

    cfg = compose(["model=hf", f"features.name={encoder_folder(encoder)}", *TUNINGS[tuning]])
    torch.manual_seed(0)
    module = instantiate(cfg.model).train()
    optimiser = torch.optim.AdamW(module.parameter_groups(), lr=1e-4)
    waves = torch.randn(batch, int(seconds * 16000)) * 0.1
    lengths, targets = torch.full((batch,), waves.shape[1]), torch.arange(batch) % 6
    process, peak, before = psutil.Process(), [0], 0

    def sample(stop: threading.Event):
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)

    times = []
    for step in range(steps + 1):
        if step == 1:  # after the warm-up: the allocator holds what a step needs
            before, peak[0], stop = process.memory_info().rss, 0, threading.Event()
            sampler = threading.Thread(target=sample, args=(stop,))
            sampler.start()
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(module(waves, lengths), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    stop.set()
    sampler.join()
    checkpoint = {"state_dict": module.state_dict(), "optimizer_states": [optimiser.state_dict()],
                  "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return {"trainable": sum(p.numel() for p in module.parameters() if p.requires_grad),
            "parameters": sum(p.numel() for p in module.parameters()),
            "step_s": statistics.median(times[1:]), "added_gib": max(peak[0], before) / 2**30 - before / 2**30,
            "rss_gib": max(peak[0], before) / 2**30, "checkpoint_mib": buffer.tell() / 2**20}


def tuning_table(encoders: list[str], batch: int, seconds: float, steps: int) -> None:
    print(f"# {machine()}; batch {batch} x {seconds} s, AdamW, median of {steps} steps after one warm-up; "
          "each way in a fresh process")
    print("| encoder | way | trainable parameters | step s | peak RSS GiB | added by the step GiB | checkpoint MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for encoder in encoders:
        for tuning in TUNINGS:
            run = subprocess.run([sys.executable, __file__, "--tuning-one", encoder, tuning, str(batch), str(seconds),
                                  str(steps)], capture_output=True, text=True)
            if run.returncode != 0:
                print(f"| {encoder} | {tuning} | failed: {run.stderr.strip().splitlines()[-1]} |", flush=True)
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            share = 100 * r["trainable"] / r["parameters"]
            print(f"| {encoder} | {tuning} | {r['trainable'] / 1e6:.2f} M ({share:.2f}%) | {r['step_s']:.2f} | "
                  f"{r['rss_gib']:.2f} | {r['added_gib']:.2f} | {r['checkpoint_mib']:.1f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=list(BASE_ENCODERS))
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--tuning", action="store_true", help="probe / LoRA / full fine-tuning on --encoders")
    parser.add_argument("--encoders", nargs="*", default=["wavlm", REAL_WHISPER])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--tuning-one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tuning_one:
        encoder, tuning, batch, seconds, steps = args.tuning_one
        print(json.dumps(tuning_step(encoder, tuning, int(batch), float(seconds), int(steps))))
        return
    if args.tuning:
        tuning_table(args.encoders, args.batch, args.seconds, args.steps)
        return
    print(f"# {machine()}; {args.clips} clips of synthetic speech (~2.5 s), batch 8, training split only")
    print("| family (base size) | recompute s/epoch | cached s/epoch | ratio | cache build s |")
    print("|---|---:|---:|---:|---:|")
    for family in args.families:
        with tempfile.TemporaryDirectory() as cache_dir:
            recompute, _ = epochs(family, args.clips, cached=False, cache_dir=cache_dir)
            cached, build = epochs(family, args.clips, cached=True, cache_dir=cache_dir)
        after_first = lambda s: min(s[1:])  # noqa: E731 - the first epoch warms the allocator up
        ratio = after_first(recompute) / after_first(cached)
        print(f"| {family} | {after_first(recompute):.2f} | {after_first(cached):.3f} | {ratio:.0f}x | "
              f"{build:.1f} |", flush=True)


if __name__ == "__main__":
    main()
