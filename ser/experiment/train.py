"""The training pipeline behind ``train.py``: compose -> fit -> test -> report."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from ser.data.splits import SPLIT_FILE
from ser.errors import ConfigError, UserError
from ser.evidence import results as results_file
from ser.evidence.plots import save_attribute_scatter, save_confusion_matrix
from ser.experiment.callbacks import FromTrainingSplit, ValidationFinishesFirst
from ser.experiment.console import quiet_console
from ser.experiment.preflight import made
from ser.experiment.tracking import closing_runs, continue_history, start
from ser.module import SERModule, with_current_targets

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a callbacks/logger group (null entries skipped)."""
    if not group:
        return []
    return [instantiate(cfg) for cfg in group.values() if cfg is not None and "_target_" in cfg]


def run(cfg: DictConfig) -> dict:
    """Train and/or test as ``cfg`` says; returns (and writes) the results.

    Model, DataModule and Trainer are all built before any work: each checks the config keys
    it owns, so a mistake ends the run as one paragraph (:class:`ConfigError`) before any data
    is generated, decoded or cached.
    """
    began = time.monotonic()
    quiet_console()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    label_runs(cfg)
    train = cfg.get("train", True)
    out = Path(cfg.paths.output_dir)
    resume_from = cfg.get("ckpt_path") or (resumable(out, cfg) if train and cfg.get("resume", True) else None)
    model = built("model", lambda: instantiate(cfg.model) if train else trained_model(cfg))
    # The one road from model to data: its front end (sample rate, shortest clip, frozen stage).
    datamodule = built("data", lambda: instantiate(cfg.data, emotions=model.classes, frontend=model.frontend,
                                                   task=model.task, train_on_waveforms=model.augments_waveforms))
    loggers = built("logger", lambda: instantiate_all(cfg.get("logger")))
    with closing_runs():
        callbacks = [*instantiate_all(cfg.get("callbacks")), *pruning(cfg), ValidationFinishesFirst(),
                     FromTrainingSplit(datamodule)]
        trainer = built("trainer", lambda: instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks))
        model.check_device("cpu" if isinstance(trainer.accelerator, CPUAccelerator) else "accelerator")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))  # as W&B receives it
        for logger in loggers:
            start(logger)
            continue_history(logger, resume_from)
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

        if train:
            fit(trainer, model, datamodule, resume_from)
        else:
            datamodule.prepare_data()
            datamodule.setup("test")
        if trainer.global_rank == 0:
            datamodule.write_split_csv(out / SPLIT_FILE)

        results = fit_summary(trainer, model.task.headline)  # read before testing resets the trainer's metrics
        if cfg.get("test", True):
            results = evaluate(cfg, trainer, model, datamodule, results)
            if cfg.get("test_corpora"):
                results["cross_corpus"] = cross_corpus(cfg, results, trainer.world_size)
            results["wall_seconds"] = round(time.monotonic() - began, 1)
            if trainer.global_rank == 0:
                if trainer.world_size == 1:
                    write_test_predictions(model, datamodule, out)
                report(results, out, loggers)
    torch.cuda.empty_cache()
    return results


def fit(trainer, model, datamodule, ckpt_path: str | None) -> None:
    try:
        # weights_only: a checkpoint is never unpickled, resuming included (ser's checkpoints
        # hold tensors and plain values only).
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except SIGTERMException:
        # Lightning stops at the next step, saves checkpoints/interrupted.ckpt and exits as if
        # finished (code 0); a scheduler must see that the job did not end, so say so.
        log.warning("Stopped by SIGTERM (preemption or a time limit): the same command in the same "
                    "run folder continues from checkpoints/interrupted.ckpt")
        raise SystemExit(128 + signal.SIGTERM) from None


def resumable(out: Path, cfg: DictConfig) -> str | None:
    """The checkpoint to continue from when this run's folder already holds one (a requeued
    SLURM job, a run killed and started again with the same command): the later of
    ``last.ckpt`` and ``interrupted.ckpt``. Only a run of the very same config continues; a
    folder that holds another config's run is a :class:`ConfigError`, never a silent mix."""
    found = [p for p in (out / "checkpoints" / "last.ckpt", out / "checkpoints" / "interrupted.ckpt") if p.is_file()]
    if not found:
        return None
    saved = out / "config.yaml"
    now = OmegaConf.to_container(cfg, resolve=True)
    changed = (sorted(differing_keys(with_current_targets(OmegaConf.to_container(OmegaConf.load(saved))), now))
               if saved.is_file() else ["(no config.yaml)"])
    if changed:
        raise ConfigError(f"the run folder {out} holds checkpoints of a run with another config "
                          f"(differs in: {', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}); "
                          "it is continued only by the same config. Start elsewhere (hydra.run.dir=...), "
                          "or pass resume=false to train afresh in it.")
    steps = {p: torch.load(p, map_location="cpu", weights_only=True)["global_step"] for p in found}
    latest = max(found, key=steps.get)
    log.info("Continuing the run in %s from %s (step %d)", out, latest.name, steps[latest])
    return str(latest)


def differing_keys(a, b, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config trees."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in a.keys() | b.keys() for k in differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def built(group: str, make):
    """``make()``, with a mistake in the ``group`` config turned into a :class:`ConfigError`
    (Lightning refuses trainer values with its MisconfigurationException)."""
    return made(group, make, refused=(MisconfigurationException,))


def pruning(cfg: DictConfig) -> list:
    """A trial of a search with a pruner reports to its study (``++search.*``, set by the sweeper;
    the pruner is the sweeper's, from the job's Hydra config)."""
    if not cfg.get("search"):
        return []
    from ser.experiment.search import PruneHopeless

    pruner = instantiate(HydraConfig.get().sweeper.pruner)
    return [PruneHopeless(cfg.search.storage, cfg.search.study_name, int(cfg.search.trial), pruner,
                          metric=f"val/{cfg.task.headline}")]


def fit_summary(trainer, headline: str) -> dict:
    """The module's running best of the task's headline on val (val/uar_best: what searches
    optimise), the last epoch's train score (its gap to the test score says how much was learnt
    of the training speakers only) and the number of epochs trained."""
    summary = {key: float(trainer.callback_metrics[key]) for key in (f"val/{headline}_best", f"train/{headline}")
               if key in trainer.callback_metrics}
    return {**summary, "epochs": trainer.current_epoch}


def label_runs(cfg: DictConfig) -> None:
    """Name the run by the config choices the user typed (``model=wavlm``, ``data=cremad``) in
    ``cfg.choices``, which tags, titles and results.json all read; runs of one multirun or
    sweep share a W&B group."""
    with open_dict(cfg):
        cfg.choices = {group: config_choice(cfg, group) for group in ("model", "data")}
        cfg.tags = list(dict.fromkeys([*cfg.get("tags", []), *cfg.choices.values()]))
        wandb_cfg = cfg.get("logger", {}) and cfg.logger.get("wandb")
        if wandb_cfg is not None and wandb_cfg.get("group") is None:
            group = os.environ.get("SER_GROUP") or sweep_name()
            if group:
                wandb_cfg.group = group


def config_choice(cfg: DictConfig, group: str) -> str:
    """The option chosen for a config group (Hydra records it); outside a Hydra app (a config
    composed by hand) the lower-cased class name stands in."""
    if HydraConfig.initialized() and (choice := HydraConfig.get().runtime.choices.get(group)):
        return choice
    target = cfg.model.net._target_ if group == "model" else cfg[group].corpus._target_
    return target.rsplit(".", 1)[-1].lower()


def sweep_name() -> str | None:
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # composed outside of a Hydra app (tests, notebooks)
        return None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return Path(hydra_cfg.sweep.dir).name
    return None


def trained_model(cfg: DictConfig) -> SERModule:
    """train=false: the checkpoint's model, scoring the emotions it knows and ``data`` has
    (cross-corpus evaluation)."""
    if not cfg.get("ckpt_path"):
        raise UserError("train=false evaluates a trained model: pass ckpt_path=PATH/TO/last.ckpt (or best.ckpt)")
    return scoring_shared_emotions(SERModule.from_checkpoint(cfg.ckpt_path), cfg.data.emotions)


def scoring_shared_emotions(model: SERModule, emotions) -> SERModule:
    """``model``, restricted to the emotions it knows and a corpus has (a model of attributes
    alone is scored on any corpus with attribute ratings)."""
    if model.task.name == "attributes":
        return model
    shared = [c for c in model.classes if c in emotions]
    if len(shared) < 2:
        raise UserError(f"the model knows {model.classes} and the corpus has {list(emotions)}: "
                        "fewer than two emotions in common, nothing to evaluate")
    if shared != model.classes and model.task.name == "both":
        raise UserError(f"task=both is tested on another corpus only over the same emotions; the model knows "
                        f"{model.classes}, the corpus has {list(emotions)}")
    if shared != model.classes:
        log.info("Cross-corpus evaluation over the %d shared emotions %s", len(shared), shared)
        model.restrict_to(shared)
    return model


def evaluate(cfg, trainer, model, datamodule, validation: dict) -> dict:
    """Score the checkpoint ``test_ckpt`` names (train=false: the loaded model) on the test split."""
    ckpt = None  # train=false: the weights are already loaded
    if cfg.get("train", True):
        which = cfg.get("test_ckpt", "last")
        ckpt = chosen_checkpoint(trainer, which) or None
        if not ckpt:
            log.warning("No %s checkpoint (fast_dev_run, no validation or no checkpoint callback): "
                        "testing the current weights", which)
    tested = test_scores(cfg, trainer, model, datamodule, ckpt)
    return results_file.build(tested, run_record(cfg, datamodule, ckpt or cfg.get("ckpt_path") or ""), validation)


def chosen_checkpoint(trainer, which: str) -> str:
    """The path of the checkpoint to test, "" if none was saved: ``last``, the last epoch's
    (the checkpoint callback without a monitor; its "best" is its latest), or ``best``, the
    epoch with the best val/uar (the one that monitors)."""
    for callback in trainer.checkpoint_callbacks:  # interrupted.ckpt's callback is one too: no monitor, no best
        if not isinstance(callback, ModelCheckpoint):
            continue
        if (callback.monitor is None) == (which == "last") and callback.best_model_path:
            return callback.best_model_path
    return ""


def test_scores(cfg, trainer, model, datamodule, ckpt: str | None) -> dict:
    """What a test split says of a model: the logged metrics, the task's record (per class,
    confusion counts) and, by speaker, per-speaker scores and the intervals."""
    # verbose=False: ser's own table (report()) prints the scores, with their intervals.
    metrics = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True, verbose=False)[0]
    return {
        **{k: float(v) for k, v in sorted(metrics.items())},
        **model.task.test_record(),
        **datamodule.split_counts(),
        **speaker_scores(cfg, model, datamodule, trainer.world_size),
    }


def speaker_scores(cfg, model, datamodule, world_size: int) -> dict:
    """The task's scores by speaker with their intervals (``test_bootstrap`` resamples; 0:
    none), and a digest of the clips scored (two runs with the same digest can be compared
    speaker by speaker: ser-report does)."""
    if world_size > 1:  # each process scored a shard of the clips
        log.info("Intervals by speaker are computed in one process: score the checkpoint with "
                 "train=false on one device for them")
        return {}
    clips = datamodule.eval_clips("test")[: len(model.task.test_outputs()[0])]  # limit_test_batches
    by_speaker = model.task.by_speaker([c.speaker for c in clips], cfg.get("test_bootstrap", 1000),
                                       seed=cfg.get("seed") or 0)
    if skipped := by_speaker.get("bootstrap", {}).get("skipped"):
        log.warning("No 95%% intervals for the test scores: %s", skipped)
    digest = hashlib.sha1("\n".join(sorted(c.path for c in clips)).encode()).hexdigest()
    return {**by_speaker, "test_clips": digest}


def cross_corpus(cfg, own: dict, world_size: int) -> dict:
    """The tested checkpoint (``test_ckpt``) on the test split of every corpus in ``test_on``, over the emotions
    each shares with the model, drawn by this run's protocol (its own corpus: this run's test).
    Each is tested as ``train=false`` would test it, by a Trainer of its own that logs nothing
    (the run's loggers keep this run's own test scores)."""
    if world_size > 1:
        log.info("Cross-corpus scores are computed in one process: run train=false ckpt_path=... "
                 "test_on=[...] on one device for them")
        return {}
    ckpt = own["tested_ckpt"]
    if not ckpt:
        log.warning("No checkpoint to test on the test_on corpora (fast_dev_run?): cross-corpus scores left out")
        return {}
    scored = {cfg.choices.data: own}
    for name, data_cfg in cfg.test_corpora.items():
        if name in scored:
            continue
        model = scoring_shared_emotions(SERModule.from_checkpoint(ckpt), data_cfg.emotions)
        datamodule = built("data", lambda d=data_cfg, m=model: instantiate(d, emotions=m.classes, frontend=m.frontend,
                                                                           task=m.task))
        trainer = built("trainer", lambda: instantiate(cfg.trainer, logger=False, callbacks=[],
                                                       enable_checkpointing=False))
        log.info("Testing %s on %s", ckpt, name)
        scored[name] = test_scores(cfg, trainer, model, datamodule, None)
    return {name: results_file.cross_corpus_entry(results) for name, results in scored.items()}


def write_test_predictions(model, datamodule, out: Path) -> None:
    """test_predictions.csv: what the model answered for each test clip (this process's)."""
    outputs, targets = model.task.test_outputs()
    clips = datamodule.eval_clips("test")[: len(outputs)]
    results_file.write_predictions(out, [(c.path, c.speaker) for c in clips],
                                   model.task.prediction_columns(outputs, targets))


def report(results: dict, out: Path, loggers) -> None:
    """results.json, the figures (confusion matrices; predicted against true attributes), the
    printed table and W&B's summary."""
    results_file.write(results, out)
    figures = []
    if "confusion_matrix" in results:
        figures.append(out / "confusion_matrix.png")
        save_confusion_matrix(np.asarray(results["confusion_matrix"]), results["classes"], figures[-1],
                              title=f"{results['model']} on {results['data']}: test UAR {results['test/uar']:.3f}")
    if "attributes" in results and (rows := results_file.read_predictions(out)):
        figures.append(out / "attributes.png")
        names = results["attributes"]
        save_attribute_scatter([[float(r[f"true_{n}"]) for n in names] for r in rows],
                               [[float(r[f"predicted_{n}"]) for n in names] for r in rows], names, figures[-1],
                               title=f"{results['model']} on {results['data']}: test CCC {results['test/ccc']:.3f}")
    for name, tested in results.get("cross_corpus", {}).items():
        if name != results["data"] and "confusion_matrix" in tested:
            save_confusion_matrix(np.asarray(tested["confusion_matrix"]), tested["classes"],
                                  out / f"confusion_matrix_{name}.png",
                                  title=f"{results['model']} ({results['data']}) on {name}: "
                                        f"test UAR {tested['test/uar']:.3f}")
    console = Console()
    console.print(results_file.table(results))
    console.print(f"Run folder: {out}")
    log_to_wandb(loggers, results, figures)
    return results


def log_to_wandb(loggers, results: dict, figures: list[Path]) -> None:
    """The test scores in the summary, the figures, and for categories a per-class recall table
    and W&B's interactive confusion chart."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb

        for key in results_file.metrics_of(results):
            logger.experiment.summary[key] = results[key]
        for name, tested in results.get("cross_corpus", {}).items():
            logger.experiment.summary[f"cross_corpus/{name}/{results_file.headline(tested)[5:]}"] = \
                tested[results_file.headline(tested)]
        logger.experiment.log({f"test/{figure.stem}_image": wandb.Image(str(figure)) for figure in figures})
        if "confusion_matrix" not in results:
            continue
        classes, counts = results["classes"], np.asarray(results["confusion_matrix"])
        # W&B's chart wants one (true, predicted) pair per clip: expand the counts back.
        true_index, pred_index = np.indices(counts.shape)
        truth = np.repeat(true_index.ravel(), counts.ravel()).tolist()
        preds = np.repeat(pred_index.ravel(), counts.ravel()).tolist()
        logger.experiment.log({
            "test/per_class_recall": wandb.Table(columns=["emotion", "recall"],
                                                 data=[[c, r] for c, r in results["per_class_recall"].items()]),
            "test/confusion_matrix": wandb.plot.confusion_matrix(y_true=truth, preds=preds, class_names=classes),
        })


def run_record(cfg, datamodule, tested_ckpt) -> dict:
    """What the run was: protocol, names, seed, checkpoint."""
    return {
        "split": datamodule.split,
        **({"split_file": str(cfg.data.split_file)} if datamodule.split == "file" else {}),
        "protocol": "speaker-dependent" if datamodule.split == "random" else "speaker-independent",
        **({"fold": cfg.data.fold, "test_group": datamodule.test_group()}
           if datamodule.split in ("kfold", "protocol") else {}),
        "model": cfg.choices.model,  # the config choices the run is named by
        "data": cfg.choices.data,
        "model_class": cfg.model.net._target_,
        "corpus": datamodule.corpus.name,
        "seed": cfg.get("seed"),
        "tested_ckpt": str(tested_ckpt),
        "trained": bool(cfg.get("train", True)),
    }
