"""What a run prints: each line once, and no line the user cannot act on.

Lightning's ``lightning`` package logger has a console handler of its own, and under Hydra its
records also reach Hydra's (console and the job's ``.log`` file): every INFO line printed
twice. Here Lightning's records go through Hydra's handlers only.

The lines silenced below are noise for every ser run, each said with why; a warning that says
something about the run at hand (too few batches for the logging interval, a metric that
could not be computed, a checkpoint that does not load) is never filtered.
"""

from __future__ import annotations

import logging
import warnings

# Python warnings, by the start of their message.
NOISE_WARNINGS = (
    # ser decides whether a run continues (ser.experiment.train.resumable) and passes the checkpoint, or
    # None for a fresh run; with an OnExceptionCheckpoint Lightning then looks for "last" itself
    # and says twice that it found none.
    r"`\.fit\(ckpt_path=None\)` was called without a model",
    r'\.fit\(ckpt_path="last"\) is set, but there is no last checkpoint available',
    # A deprecation inside Lightning's own code (its _pytree module on torch 2.14): nothing
    # for a user of ser to change.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # On a machine with SLURM's srun: ser's cluster route is Hydra's submitit launcher, which
    # starts every job under srun; a run on the login node or in a test is not meant to.
    r"The `srun` command is available on your system but is not used",
)

# Lightning's INFO lines, by the start of their message.
NOISE_RECORDS = (
    "💡 Tip:",  # an advertisement for another logger
    "Trainer already configured with model summary callbacks",  # ser's rich summary is the one chosen
    "TPU available:",  # ser runs on CPUs and CUDA GPUs
    *(f"`Trainer(limit_{split}_batches=1.0)` was configured so 100%" for split in ("train", "val", "test")),
)
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


class DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE_RECORDS)


def quiet_console() -> None:
    """Print each of Lightning's lines once, through the application's handlers (Hydra's), and
    silence :data:`NOISE_WARNINGS` and :data:`NOISE_RECORDS`. Idempotent; call it before the
    Trainer is built."""
    for pattern in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    if logging.getLogger().handlers:  # an application (Hydra) prints the records: Lightning need not
        for name in LIGHTNING_LOGGERS:
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)
            logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNoise) for f in logger.filters):
            logger.addFilter(DropNoise())

