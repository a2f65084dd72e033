"""Experiment tracking: W&B that never prompts."""

from __future__ import annotations

import configparser
import contextlib
import logging
import netrc
import os
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def has_wandb_credentials() -> bool:
    """An API key, or a netrc entry for the W&B server runs go to (a self-hosted one too)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return path.is_file() and netrc.netrc(path).authenticators(wandb_host()) is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_host() -> str:
    """The W&B server's host: ``WANDB_BASE_URL``, else the one ``wandb login --host`` saved in
    W&B's settings file, else W&B's cloud."""
    url = os.environ.get("WANDB_BASE_URL")
    if not url:
        settings = configparser.ConfigParser()
        config_dir = Path(os.environ.get("WANDB_CONFIG_DIR", Path.home() / ".config" / "wandb"))
        settings.read(config_dir / "settings")
        url = settings.get("default", "base_url", fallback=None)
    return urlparse(url).hostname if url else "api.wandb.ai"


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
    if kwargs.get("save_dir") and not kwargs.get("id"):
        kwargs.update(id=run_id(Path(kwargs["save_dir"])), resume="allow")
    return WandbLogger(offline=offline, **kwargs)


def run_id(run_dir: Path) -> str:
    """The W&B run id of a run folder, kept in it: a run started again in the same folder
    (a requeued SLURM job, a resumed run) continues the same W&B run."""
    path = run_dir / "wandb_id"
    if not path.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(4))  # 8 of [0-9a-f]: a valid W&B run id
    return path.read_text().strip()


def start(logger, patience_s: float = 60.0) -> None:
    """Start a WandbLogger's run now, waiting while a killed process's W&B service still holds
    the folder's run id: after a SIGKILL that service outlives the process for a few seconds,
    and a run started again at once (a requeue) would fail on "run ID ... is in use"."""
    if not isinstance(logger, WandbLogger):
        return
    deadline = time.monotonic() + patience_s
    while True:
        try:
            logger.experiment  # noqa: B018 - the property starts the run
            return
        except Exception as err:  # noqa: BLE001 - W&B reports it as a server response error
            if "in use" not in str(err) or time.monotonic() > deadline:
                raise
            log.info("W&B run %s is still held by the process before this one; waiting", logger.version)
            time.sleep(2)


@contextlib.contextmanager
def closing_runs():
    """End the job's W&B run when the job ends, marked failed if it raised.

    W&B keeps one run per process open until it is finished, and a WandbLogger attaches to
    the open one: without this, every later job of a multirun or Optuna search in the same
    process (basic launcher, joblib workers) would log into the first job's run.
    """
    try:
        yield
    except BaseException:
        _finish_wandb(exit_code=1)
        raise
    _finish_wandb(exit_code=0)


def _finish_wandb(exit_code: int) -> None:
    wandb = sys.modules.get("wandb")  # not imported: no run to end
    if wandb is not None and wandb.run is not None:
        wandb.run.finish(exit_code=exit_code)
