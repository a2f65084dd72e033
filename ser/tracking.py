"""Experiment tracking: W&B that never prompts."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_logger(offline: bool | None = None, **kwargs) -> WandbLogger:
    """A WandbLogger that logs online only when credentials exist, and offline otherwise.

    ``offline=None`` decides from the environment; ``WANDB_MODE`` (e.g. ``disabled``) always
    wins. Offline runs land in ``<save_dir>/wandb`` and can be uploaded with ``wandb sync``.
    """
    if offline is None:
        offline = not has_wandb_credentials()
    if offline and not os.environ.get("WANDB_MODE"):
        log.info("No W&B credentials: logging offline; upload later with `wandb sync %s/wandb/offline-run-*`",
                 kwargs.get("save_dir", "."))
    os.environ.setdefault("WANDB_SILENT", "true")
    return WandbLogger(offline=offline, **kwargs)
