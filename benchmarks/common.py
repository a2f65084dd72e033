"""Helpers shared by the benchmarks: machine description, config composition, timing."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmark this checkout, whatever `pip install -e` points at


def machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def save_checkpoint(module, path: Path) -> None:
    """A checkpoint in ser's format, as train.py writes it, without training."""
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)  # what Lightning adds for ser-predict
    torch.save(checkpoint, path)


def timed(fn, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` (after one warm-up call): on a
    shared machine noise only ever adds time."""
    fn()
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()
