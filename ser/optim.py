"""The optimiser and learning-rate schedule, built from their configs (``model.optimizer``,
``model.scheduler``). Needs torch, never Lightning: ``train.py`` checks them before it
imports Lightning."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn

from ser.errors import ConfigError


def optimisation(optimizer: dict, scheduler: dict | None, params) -> dict | torch.optim.Optimizer:
    """What ``LightningModule.configure_optimizers`` returns: the optimiser, and with a
    scheduler the dict that also says when to step it (it watches val/uar)."""
    built = instantiate(optimizer, params=params)
    if not scheduler:
        return built
    cfg = dict(scheduler)
    lightning_keys = {k: cfg.pop(k) for k in ("interval", "monitor", "frequency") if k in cfg}
    return {"optimizer": built,
            "lr_scheduler": {"scheduler": instantiate(cfg, optimizer=built), "monitor": "val/uar", **lightning_keys}}


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


