"""Callbacks that every ``ser`` training run carries, whatever ``callbacks=`` says."""

from __future__ import annotations

import lightning as L
from lightning.pytorch import callbacks
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from lightning.pytorch.trainer.states import TrainerFn


class ValidationFinishesFirst(L.Callback):
    """A SIGTERM (preemption, a SLURM time limit) that arrives during validation stops the
    run when validation ends, not after the batch it arrived in.

    Lightning stops after the current validation batch and writes ``interrupted.ckpt``; but
    when that run is continued, Lightning does not run the interrupted validation again (it
    only resumes one stopped *inside* a batch), so the epoch's score would be lost: never
    logged, never a candidate for ``best.ckpt``. Validation takes seconds; a scheduler's
    grace period is longer.
    """

    def __init__(self) -> None:
        self._stop_requested = False

    def on_validation_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        # Lightning reads the flag right after this hook; hold it until validation is over.
        signals = trainer._signal_connector
        if signals.received_sigterm and not trainer.sanity_checking:
            self._stop_requested = True
            signals.received_sigterm = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._stop_requested:
            trainer._signal_connector.received_sigterm = True
            self._stop_requested = False


class FromTrainingSplit(L.Callback):
    """Hands the model what it learns from its training split before it trains: the class
    counts (``model.class_weights=balanced``) and the pooled per-speaker statistics its front
    end keeps for a speaker whose other clips are not at hand (``features.normalize=speaker``).

    The DataModule is this callback's explicit argument. Lightning sets the data up and then
    calls the callbacks' ``setup``, so the split is read once, by the fit itself, with the
    trainer attached (the cache it holds on a GPU included); a resumed run's checkpoint is
    loaded after this and brings the same values back.
    """

    def __init__(self, datamodule) -> None:
        self.datamodule = datamodule

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            pl_module.learn_from_training_split(self.datamodule.class_counts("train"),
                                                self.datamodule.training_statistics(),
                                                self.datamodule.corpus.attribute_scale)


class InterruptedCheckpoint(OnExceptionCheckpoint):
    """Lightning's OnExceptionCheckpoint (``checkpoints/interrupted.ckpt`` on Ctrl-C, SIGTERM or
    a crash), saving the whole training state explicitly: Lightning's own leaves
    ``weights_only`` unset, which saves the same but logs "`weights_only` was not set,
    defaulting to `False`", read as if a checkpoint were unpickled. Nothing here is: every load
    is ``weights_only=True`` (``torch.load``'s), resuming included."""

    def on_exception(self, trainer: L.Trainer, *_, **__) -> None:
        trainer.save_checkpoint(self.ckpt_path, weights_only=False)  # optimiser and loops too, to resume


class EMAWeightAveraging(callbacks.EMAWeightAveraging):
    """Lightning's exponential moving average of the weights (``callbacks=ema``), scored as
    its checkpoints are: a checkpoint's ``state_dict`` holds the averaged weights, which
    ser-predict and ser-export load. Lightning's callback, when the same trainer tests a
    checkpoint after fitting, loads the checkpoint's *training* weights (``current_model_state``)
    into the model, so the test step scored other weights than every later use of the
    checkpoint. Outside fitting this keeps the averaged ``state_dict`` Lightning already loaded;
    resuming a fit restores both as Lightning does."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
