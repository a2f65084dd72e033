"""A frozen encoder's training epoch: recomputing the encoder every step vs reading its cache.

    python benchmarks/encoders.py                        # every family, base size
    python benchmarks/encoders.py --families wavlm --clips 96

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
import tempfile
import time

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=list(BASE_ENCODERS))
    parser.add_argument("--clips", type=int, default=48)
    args = parser.parse_args()
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
