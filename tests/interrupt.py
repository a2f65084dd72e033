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
