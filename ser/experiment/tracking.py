"""Experiment tracking: W&B that never prompts, and a CSV history that survives a restart."""

from __future__ import annotations

import configparser
import contextlib
import csv
import logging
import netrc
import os
import secrets
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import torch
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

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
    logger = WandbLogger(offline=offline, **kwargs)
    # Lightning 2.6 passes anonymous=None to wandb.init, which W&B 0.31 answers with "The
    # anonymous setting has no effect" on every run: a setting nobody set, left out.
    if logger._wandb_init.get("anonymous") is None:
        logger._wandb_init.pop("anonymous", None)
    return logger


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


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger (``csv/metrics.csv``), except that a run continued in its folder
    keeps its history: Lightning's deletes the earlier metrics.csv when it starts ("Previous log
    files in this directory will be deleted"), so a run stopped after epoch 1 of 4 and continued
    kept only the epochs after the restart. Here the rows logged up to the checkpoint the run
    continues from are kept (:func:`continue_history`), each logging event's row once, and whatever is
    logged before a checkpoint is on disk when the checkpoint is."""

    @property
    def experiment(self) -> HistoryWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = HistoryWriter(self.log_dir)
        return self._experiment

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        super().after_save_checkpoint(checkpoint_callback)
        self.save()


class HistoryWriter(ExperimentWriter):
    """metrics.csv rewritten whole at each save from the rows kept in memory (one run's rows:
    a few per epoch), earlier rows of a continued run first."""

    def __init__(self, log_dir: str) -> None:
        self.earlier: list[dict] = []  # rows found in metrics.csv at start (rows of the run before)
        self.history: list[dict] = []
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        # Instead of Lightning's deletion: read what is there; continue_history decides.
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                self.earlier = [{k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]

    def continue_from(self, step: int) -> None:
        """Keep the earlier rows logged at or before ``step`` (the checkpoint's global step)."""
        self.history = [row for row in self.earlier if int(float(row.get("step", 0))) <= step]

    def save(self) -> None:
        if not self.metrics and not self.history:
            return
        rows = once_per_event([*self.history, *self.metrics])
        self.metrics, self.history = [], rows
        self.metrics_keys = sorted({key for row in rows for key in row})
        with self._fs.open(self.metrics_file_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)


def once_per_event(rows: list[dict]) -> list[dict]:
    """Rows of the same logging event (the same global step and the same metrics: a
    validation, a learning rate) logged again after a restart: only the later one stays. The
    step, not the epoch, names the event: an epoch validated twice (``val_check_interval=0.5``)
    logs the same metrics at two steps, and both are kept."""
    def kind(row):
        return row.get("step") is not None and (str(row["step"]), frozenset(row))

    last = {kind(row): i for i, row in enumerate(rows) if kind(row)}
    return [row for i, row in enumerate(rows) if not kind(row) or last[kind(row)] == i]


def continue_history(logger, checkpoint: str | None) -> None:
    """A run continuing from ``checkpoint`` keeps its CSV history up to it; a run that starts
    afresh (none) starts an empty one, as Lightning would."""
    if not isinstance(logger, CSVLogger):
        return
    writer = logger.experiment
    step = torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"] if checkpoint else -1
    writer.continue_from(step)
