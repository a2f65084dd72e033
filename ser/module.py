"""The one LightningModule: front end + network + task + optimisation.

Built by ``hydra.utils.instantiate(cfg.model)``. It receives the *configs* of its parts
(``_recursive_: false``) and builds them itself, so the network can be sized from the
front end (feature count) and the task (output size), and so the checkpoint holds plain,
safely loadable hyper-parameters (no pickled objects). The task (``ser.tasks``) owns the loss,
the metrics and what the test records; this module runs the steps.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MaxMetric

from ser.augment import Augment
from ser.errors import ConfigError, UserError
from ser.frontends.normalize import SpeakerStatistics
from ser.frontends.spectral import FeatureFrontend
from ser.optim import check_compile, check_optimisation, optimisation
from ser.tasks import build_task

CHECKPOINT_FORMAT = 2  # 2: the front end keeps the pooled training statistics (frontend.pooled.*)
# Front-end classes by the names checkpoints written before ser/frontends/ recorded.
MOVED_TARGETS = {"ser.features.FeatureFrontend": "ser.frontends.spectral.FeatureFrontend",
                 "ser.features.EgemapsFrontend": "ser.frontends.functionals.EgemapsFrontend",
                 "ser.encoders.EncoderFrontend": "ser.frontends.encoders.EncoderFrontend",
                 "ser.features.Augment": "ser.augment.Augment"}
# Modules that moved from ser/'s root into its wings: a run's config.yaml written before names
# its logger and callback targets by the old path (ser.tracking.CSVLogger).
MOVED_MODULES = {f"ser.{name}": f"ser.{wing}.{name}" for wing, names in {
    "experiment": ("train", "search", "sweep_engine", "side_env", "tracking", "callbacks", "preflight"),
    "evidence": ("results", "report", "grid", "plots", "aggregate"),
    "serving": ("export", "runtime", "predict")}.items() for name in names}


def current_target(target):
    """A ``_target_`` as ser names it now, whatever release wrote it (other values unchanged)."""
    if not isinstance(target, str):
        return target
    if target in MOVED_TARGETS:
        return MOVED_TARGETS[target]
    module, _, name = target.rpartition(".")
    return f"{MOVED_MODULES[module]}.{name}" if module in MOVED_MODULES else target


def with_current_targets(tree):
    """A plain config tree with every ``_target_`` as :func:`current_target` names it."""
    if isinstance(tree, dict):
        return {k: current_target(v) if k == "_target_" else with_current_targets(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [with_current_targets(v) for v in tree]
    return tree


def plain(value):
    """OmegaConf containers -> Python dicts/lists (resolved), anything else unchanged."""
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


class SERModule(L.LightningModule):
    def __init__(
        self,
        net: dict,
        classes: list[str],
        frontend: dict,
        optimizer: dict,
        scheduler: dict | None = None,
        augment: dict | None = None,
        compile: bool = False,
        channels_last: bool = True,
        encoder_lr: float | None = None,
        class_weights: str | None = None,
        task: dict | None = None,
    ):
        """``encoder_lr``: the learning rate of a pretrained encoder front end being
        fine-tuned (None: the optimiser's). ``class_weights="balanced"``: the loss weighs each
        class by the inverse of its frequency in the training split (``ser.tasks``)."""
        super().__init__()
        hparams = {k: plain(v) for k, v in dict(net=net, classes=classes, frontend=frontend,
                                                 optimizer=optimizer, scheduler=scheduler,
                                                 augment=augment, compile=compile,
                                                 channels_last=channels_last, encoder_lr=encoder_lr,
                                                 class_weights=class_weights, task=task).items()}
        self.save_hyperparameters(hparams)
        check_optimisation(hparams["optimizer"], hparams["scheduler"])
        self.task = build_task(hparams["task"], hparams["classes"], class_weights)
        if (hparams["task"] or {}).get("headline", self.task.headline) != self.task.headline:
            raise ConfigError(f"task.headline={hparams['task']['headline']} is not what task={self.task.name} "
                              f"scores ({self.task.headline}); leave it as the task config gives it")
        self.frontend = _build(hparams["frontend"], FeatureFrontend)
        self.augment = _build(hparams["augment"], Augment) if hparams["augment"] else None
        self.net = instantiate(hparams["net"], num_classes=self.task.output_size, **self.frontend.net_arguments())
        if channels_last:
            # 4-D conv weights in NHWC make every feature map NHWC: oneDNN's convolutions and
            # max-pooling run ~1.3x faster on CPU (measured on CNN-GRU), and tensor cores want
            # it under mixed precision. Networks without 2-D convolutions are unaffected.
            self.net.to(memory_format=torch.channels_last)
        if compile:
            self.net = torch.compile(self.net)
        self._train_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # loss, preds, targets
        # The running best of val/uar, the value searches optimise. Computed here rather than
        # read from the checkpoint callback, so it exists in every run that validates
        # (fast_dev_run and limit_* runs switch that callback off); saved in checkpoints, so a
        # resumed run keeps its best.
        self.val_uar_best = MaxMetric()
        self.val_uar_best.persistent(True)

    @property
    def classes(self) -> list[str]:
        return self.task.classes

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.task.loss(outputs, targets)

    def learn_from_training_split(self, class_counts: list[int],
                                  statistics: tuple[SpeakerStatistics, float] | None,
                                  attribute_scale: tuple[float, float] | None = None) -> None:
        """What the model takes from its training split before it trains (handed over by
        ``ser.experiment.callbacks.FromTrainingSplit``): class counts for the task's class weights, the
        pooled per-speaker statistics the front end keeps for a speaker with no other clips, and
        the corpus's attribute rating scale (ser-predict reports values on it)."""
        self.task.weigh_classes(class_counts)
        self.task.learn_scale(attribute_scale)
        if statistics is not None:
            self.frontend.pooled.remember(*statistics)

    def on_fit_start(self) -> None:
        self.check_device(self.device.type)

    def check_device(self, device_type: str) -> None:
        """Refuse what cannot run on this device, before any work (run() asks with the
        trainer's accelerator; on_fit_start asks again for code that fits by hand)."""
        check_compile(self.hparams.compile, device_type)

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor,
                statistics: SpeakerStatistics | None = None) -> torch.Tensor:
        """waveforms[B, T] (or cached log-mel[B, n_mels, frames]), lengths[B] -> logits[B, num_classes].
        ``statistics``: the speaker's, for a model normalising per speaker (the front end's forward)."""
        feats, frames = self.frontend(inputs, lengths, statistics=statistics)
        logits = self.net(feats, frames)
        index = getattr(self, "class_index", None)
        return logits if index is None else logits.index_select(1, index)

    @property
    def augments_waveforms(self) -> bool:
        """Whether training changes the waveform before the front end (``augment.channel``):
        the data side then serves training clips as waveforms, not as a cached frozen stage."""
        return self.augment is not None and self.augment.channel is not None

    def _train_features(self, inputs, lengths, statistics=None):
        if self.augments_waveforms and inputs.dim() == 2:
            inputs, lengths, statistics = self._through_channel(inputs, lengths, statistics)
        gain_db = self.augment.random_gain(len(inputs), inputs.device)
        feats, frames = self.frontend(inputs, lengths, gain_db, statistics=statistics)
        return self.augment.features(feats, frames)

    def _through_channel(self, waves, lengths, statistics):
        """Waveforms through the channel augmentation: what the front end is then handed, its
        lengths and the speaker statistics to normalise it by. With ``keep_clean_level`` (and a
        front end that says its change of level) a changed clip is standardised by its speaker's
        statistics shifted by what the channel added to its mean per band: at test time a room
        or microphone that all of a speaker's clips share is in that speaker's statistics and
        removed with them, so training keeps what normalisation cannot remove (reverberation's
        smear, noise in the gaps), not a level no test clip will have. The front end is then
        handed the changed log-mel it computed for that, as the cache would hand it."""
        changed = self.augment.channel(waves, lengths, self.sample_rate)
        changed_log_mel = getattr(self.frontend, "changed_log_mel", None)
        if statistics is not None and self.augment.channel.keep_clean_level and changed_log_mel is not None:
            mel, frames, shift = changed_log_mel(changed, waves, lengths)
            return mel, frames, SpeakerStatistics(statistics.mean + shift[:, None, :], statistics.std)
        return changed, lengths, statistics

    def _train_logits(self, inputs, lengths, statistics=None):
        return self.net(*self._train_features(inputs, lengths, statistics))

    def _mixup_step(self, inputs, lengths, labels, statistics=None):
        """Logits and loss of a batch mixed with itself in another order (mixup): the loss
        is the same mix of the two clips' labels' losses."""
        feats, frames = self._train_features(inputs, lengths, statistics)
        feats, frames, partner, share = self.augment.mixed(feats, frames)
        logits = self.net(feats, frames)
        return logits, share * self.loss(logits, labels) + (1 - share) * self.loss(logits, labels[partner])

    def on_train_epoch_start(self):
        self._train_outputs = []

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:  # a few batches before training: not a result
            return
        # Every process calls this at the same point, so the two reductions below line up
        # (compute() is cached: Lightning's own compute of val/uar reduces nothing again).
        self.val_uar_best.update(self.task.headline_metric("val").compute())
        # The headline metric is synced across processes, so every process holds the same best;
        # sync_dist averages equal values (and spares a DDP run Lightning's warning).
        self.log(f"val/{self.task.headline}_best", self.val_uar_best.compute(), prog_bar=True, sync_dist=True)

    def on_train_epoch_end(self):
        if not self._train_outputs:
            return
        losses, outputs, targets = zip(*self._train_outputs)
        self._train_outputs = []
        sizes = torch.tensor([len(batch) for batch in targets], device=losses[0].device)
        # The mean over clips, as self.log(..., batch_size=...) per step would have given.
        loss = (torch.stack(losses) * sizes).sum() / sizes.sum()
        self.log("train/loss", loss, prog_bar=True, sync_dist=True)
        self.task.update("train", torch.cat(outputs), torch.cat(targets))
        # Logged as metric objects: Lightning computes them (gathering every process's
        # counts, at the point where all processes do) and resets them.
        self.log_dict(self.task.metrics("train"), on_step=False, on_epoch=True)

    def training_step(self, batch, batch_idx):
        inputs, lengths, labels, *speaker = batch
        # Waveforms of a model normalising per speaker come with each clip's speaker's
        # statistics (mean[B, F], std[B, F]), which the front end applies to their log-mel.
        statistics = SpeakerStatistics(speaker[0][:, None, :], speaker[1][:, None, :]) if speaker else None
        if self.augment is not None and self.augment.mixup > 0:
            logits, loss = self._mixup_step(inputs, lengths, labels, statistics)
        else:
            logits = (self._train_logits(inputs, lengths, statistics) if self.augment is not None
                      else self(inputs, lengths, statistics))
            loss = self.loss(logits, labels)
        # Nothing is logged per training step: torchmetrics' update waits for the GPU
        # (argument checks, bincount) and each self.log costs host time, both mid-step.
        # Loss and predictions stay on the device and are scored once per epoch.
        self._train_outputs.append((loss.detach(), logits.detach(), labels))
        return loss

    def validation_step(self, batch, batch_idx):
        self._score(batch, "val")

    def test_step(self, batch, batch_idx):
        self.task.record(*self._score(batch, "test"))

    def _score(self, batch, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and metrics of an evaluation batch (no augmentation); returns (outputs, targets)."""
        inputs, lengths, targets = batch
        outputs = self(inputs, lengths)
        evaluating_fit = split == "val"  # shown in the progress bar while training
        self.log(f"{split}/loss", self.loss(outputs, targets), on_step=False, on_epoch=True,
                 prog_bar=evaluating_fit, batch_size=len(targets), sync_dist=True)
        self.task.update(split, outputs, targets)
        self.log_dict(self.task.metrics(split), on_step=False, on_epoch=True, prog_bar=evaluating_fit,
                      batch_size=len(targets))
        return outputs, targets

    def on_test_epoch_start(self):
        self.task.start_test()

    def predict_step(self, batch, batch_idx):
        inputs, lengths = batch[0], batch[1]
        return self.task.readout(self(inputs, lengths))

    def configure_optimizers(self) -> Any:
        return optimisation(self.hparams.optimizer, self.hparams.scheduler, self.parameter_groups(),
                            monitor=f"val/{self.task.headline}",
                            total_steps=lambda: int(self.trainer.estimated_stepping_batches))

    def parameter_groups(self) -> list[dict]:
        """The trainable parameters: the network's, and the front end's (a pretrained encoder
        being fine-tuned) at ``encoder_lr`` where one is set (the standard recipe gives the
        encoder a rate well below the freshly initialised head's)."""
        front = [p for p in self.frontend.parameters() if p.requires_grad]
        in_front = set(front)
        groups = [{"params": [p for p in self.parameters() if p.requires_grad and p not in in_front]}]
        if front:
            rate = {"lr": self.hparams.encoder_lr} if self.hparams.get("encoder_lr") else {}
            groups.append({"params": front, **rate})
        return groups

    def restrict_to(self, classes: list[str]) -> None:
        """Score only ``classes`` (a subset of the trained ones, e.g. the emotions a second
        corpus shares): logits of other classes are dropped and the test metrics resized."""
        self.register_buffer("class_index", self.task.restrict_to(classes).to(self.device), persistent=False)

    @classmethod
    def from_checkpoint(cls, path, map_location="cpu") -> SERModule:
        """Rebuild a trained module from a ``ser`` checkpoint without unpickling any object."""
        state = read_checkpoint(path, map_location)
        hparams = dict(state["hyper_parameters"])
        frontend = dict(hparams["frontend"])
        frontend["_target_"] = current_target(frontend.get("_target_"))
        if "pretrained" in frontend and not state["ser"].get("frozen_base"):
            frontend["pretrained"] = False  # the state_dict brings the encoder's weights: only its config is read
        # A trained model never augments again: no augmentation is built (a channel's folders
        # of rooms and noises need not exist where the model is used).
        module = cls(**{**hparams, "frontend": frontend, "augment": None})
        module.on_load_checkpoint(state)
        module.load_state_dict(state["state_dict"])
        return module

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Checkpoints written before val/uar_best, or the front end's pooled statistics, were
        # kept: start the running best afresh, and keep the statistics unknown (identity).
        defaults = {**self.val_uar_best.state_dict(prefix="val_uar_best."),
                    **{name: value for name, value in self.state_dict().items() if name.startswith("frontend.pooled.")
                       or name.endswith("rating_scale")}}
        saved_base = checkpoint.get("ser", {}).get("frozen_base")
        if saved_base:  # a LoRA checkpoint: the frozen base is the one this module loaded, if it is the same
            from ser.frontends.adapters import check_base

            check_base(saved_base, self.frontend.frozen_base()["digest"])
            base = self._frozen_base_weights()
            for weights in self._weights_in(checkpoint):  # the EMA callback's copy of the weights too
                for name, value in base.items():
                    weights.setdefault(name, value)
        for name, value in defaults.items():
            checkpoint["state_dict"].setdefault(name, value)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Marks the file as ours for ser-predict; everything in it loads with weights_only=True.
        checkpoint["ser"] = {"format": CHECKPOINT_FORMAT, "classes": self.classes,
                             "sample_rate": self.sample_rate}
        frozen_base = getattr(self.frontend, "frozen_base", lambda: None)()
        if frozen_base:  # LoRA: adapters, head and training state; the base is named, not copied
            base = self._frozen_base_weights()
            for weights in self._weights_in(checkpoint):
                for name in base:
                    weights.pop(name, None)
            checkpoint["ser"]["frozen_base"] = frozen_base

    @staticmethod
    def _weights_in(checkpoint: dict) -> list[dict]:
        """The module's weights a checkpoint holds: its state_dict, and with callbacks=ema the
        training weights beside the averaged ones (Lightning's WeightAveraging)."""
        return [checkpoint["state_dict"], *([checkpoint["current_model_state"]] if "current_model_state" in checkpoint else [])]

    def _frozen_base_weights(self) -> dict:
        return {f"frontend.{name}": value for name, value in self.frontend.state_dict().items()
                if self.frontend.is_base_weight(name)}


class NotASerCheckpoint(UserError):
    pass


def read_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; refuse anything that is not ours."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise NotASerCheckpoint(f"checkpoint {str(path)!r} does not exist") from None
    except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
        raise NotASerCheckpoint(f"{str(path)!r} is not a ser checkpoint (it does not load as plain "
                                f"weights: {err.__class__.__name__})") from None
    if not isinstance(state, dict) or "ser" not in state or "hyper_parameters" not in state:
        raise NotASerCheckpoint(f"{str(path)!r} is not a ser checkpoint (no 'ser' entry); "
                                "checkpoints are written by train.py into <run dir>/checkpoints/")
    return state


def _build(cfg: dict, default_cls):
    cfg = dict(cfg)
    target = cfg.pop("_target_", None)
    return instantiate({"_target_": target, **cfg}) if target else default_cls(**cfg)
