"""A callback that signals its own process at one chosen point of training, as a scheduler's
SIGTERM or the kernel's SIGKILL would: the resume tests stop a run exactly where it is
hardest to continue, not wherever a sleep happens to end."""

import os
import signal

import lightning as L


class SignalAt(L.Callback):
    """Send ``signal_name`` to this process at ``stage`` (``train`` or ``val`` batch
    ``batch``) of ``epoch``, in the first process only (the run started again in its folder
    has ``SER_TEST_SIGNALLED`` set)."""

    def __init__(self, stage: str, epoch: int, batch: int, signal_name: str):
        self.at = (stage, epoch, batch)
        self.signal = getattr(signal, signal_name)

    def _maybe_signal(self, trainer, stage: str, batch_idx: int) -> None:
        if (stage, trainer.current_epoch, batch_idx) == self.at and not trainer.sanity_checking \
                and not os.environ.get("SER_TEST_SIGNALLED"):
            os.kill(os.getpid(), self.signal)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._maybe_signal(trainer, "train", batch_idx)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._maybe_signal(trainer, "val", batch_idx)


class RequeueAt(L.Callback):
    """Ask the SLURM scheduler to requeue this job (``scontrol requeue``) at training batch
    ``batch`` of ``epoch``, in the job's first run only (SLURM sets ``SLURM_RESTART_COUNT`` on a
    requeued one), then wait for the scheduler's SIGTERM to reach the training loop, as a
    preemption would: the requeue happens where the test chose, by the real scheduler."""

    def __init__(self, epoch: int, batch: int, patience_s: float = 60.0):
        self.at, self.patience_s = (epoch, batch), patience_s

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        import subprocess
        import time

        if (trainer.current_epoch, batch_idx) != self.at or os.environ.get("SLURM_RESTART_COUNT", "0") != "0":
            return
        subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=True)
        deadline = time.monotonic() + self.patience_s
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.2)
