"""How the network is optimised: the optimiser and learning-rate schedule, built from their
configs (``model.optimizer``, ``model.scheduler``), and where ``model.compile`` can run. Needs
torch, never Lightning: ``train.py`` checks them before it imports Lightning."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from hydra.utils import instantiate
from torch import nn

from ser.errors import ConfigError


def optimisation(optimizer: dict, scheduler: dict | None, params, total_steps: Callable[[], int] | None = None,
                 monitor: str = "val/uar") -> dict | torch.optim.Optimizer:
    """What ``LightningModule.configure_optimizers`` returns: the optimiser, and with a
    scheduler the dict that also says when to step it (it watches ``monitor``). A scheduler
    argument ``total_steps: auto`` becomes the run's optimiser steps, ``total_steps()``."""
    built = instantiate(optimizer, _partial_=True)(params)  # parameter groups stay plain dicts
    if not scheduler:
        return built
    cfg = dict(scheduler)
    if cfg.get("total_steps") == "auto":
        cfg["total_steps"] = total_steps()
    lightning_keys = {k: cfg.pop(k) for k in ("interval", "monitor", "frequency") if k in cfg}
    return {"optimizer": built,
            "lr_scheduler": {"scheduler": instantiate(cfg, optimizer=built), "monitor": monitor, **lightning_keys}}


def check_optimisation(optimizer: dict, scheduler: dict | None) -> None:
    """Build the optimiser once on a stand-in parameter, so that a value it refuses (a negative
    learning rate, an unknown argument) is a config error before any data work."""
    try:
        instantiate(optimizer, params=[nn.Parameter(torch.zeros(1))])
    except Exception as err:  # noqa: BLE001 - optimisers refuse values with ValueError or TypeError
        raise ConfigError(f"model.optimizer is not valid: {_reason(err)}") from None
    t_max = (scheduler or {}).get("T_max")
    if scheduler and "T_max" in scheduler and not (isinstance(t_max, int) and t_max > 0):
        raise ConfigError(f"model.scheduler.T_max is {t_max!r}: the cosine schedule needs a positive "
                          "number of epochs (it follows trainer.max_epochs). Set trainer.max_epochs "
                          "or model.scheduler.T_max, or model.scheduler=null for a constant rate.")


def _reason(err: BaseException) -> str:
    """The innermost message of an error Hydra's instantiate may have wrapped."""
    while err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}"


def warmup_then_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.1
                       ) -> torch.optim.lr_scheduler.LambdaLR:
    """The fine-tuning schedule of pretrained encoders: the rate rises linearly from zero over
    the first ``warmup_fraction`` of the steps (the fresh head's first gradients would
    otherwise wreck the pretrained layers), then follows a cosine to zero. Step it per step."""
    warmup = max(1, int(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_compile(compile: bool, device_type: str) -> None:
    """Refuse ``model.compile`` where it cannot run (also asked by the module at fit start)."""
    if compile and device_type == "cpu":
        # Measured again with torch 2.14.1 (2026-12-01): Inductor's CPU code for CNN-GRU
        # and CNN compiles the first batch and fails at the second batch length with
        # "cannot determine truth value of Relational: 1 < s76" (dynamic shapes); the LSTM
        # compiles. Variable-length batches are the norm here, so refuse it up front.
        raise ConfigError("model.compile=true is not supported on the CPU: torch 2.14's compiler "
                          "fails on the second batch length of the convolutional models there. "
                          "Leave it off on CPU runs.")
