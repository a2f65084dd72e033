"""The training pipeline behind ``train.py``: compose -> fit -> test -> report."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from ser.errors import UserError
from ser.module import SERModule
from ser.plots import normalise_rows, save_confusion_matrix

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a callbacks/logger group (null entries skipped)."""
    if not group:
        return []
    return [instantiate(cfg) for cfg in group.values() if cfg is not None and "_target_" in cfg]


def run(cfg: DictConfig) -> dict:
    """Train and/or test as ``cfg`` says; returns (and writes) the results."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    label_runs(cfg)
    if cfg.get("train", True):
        datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    else:
        datamodule, model = evaluation_setup(cfg)
    loggers = instantiate_all(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")), logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    else:
        datamodule.prepare_data()
        datamodule.setup("test")
    if trainer.global_rank == 0:
        datamodule.write_split_csv(out / "split.csv")

    results = {}
    if cfg.get("test", True):
        results = test(cfg, trainer, model, datamodule, loggers)
    torch.cuda.empty_cache()
    return results


def label_runs(cfg: DictConfig) -> None:
    """Tag runs with model and corpus; runs of one multirun or sweep share a W&B group."""
    model = cfg.model.net._target_.rsplit(".", 2)[-2]
    corpus = cfg.data.corpus._target_.rsplit(".", 1)[-1].lower()
    with open_dict(cfg):
        cfg.tags = list(dict.fromkeys([*cfg.get("tags", []), model, corpus]))
        wandb_cfg = cfg.get("logger", {}) and cfg.logger.get("wandb")
        if wandb_cfg is not None and wandb_cfg.get("group") is None:
            group = os.environ.get("SER_GROUP") or sweep_name()
            if group:
                wandb_cfg.group = group


def sweep_name() -> str | None:
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:  # composed outside of a Hydra app (tests, notebooks)
        return None
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return Path(hydra_cfg.sweep.dir).name
    return None


def evaluation_setup(cfg: DictConfig):
    """train=false: the checkpoint's model on ``data``'s test split, over the emotions the
    model knows and the corpus has (cross-corpus evaluation)."""
    if not cfg.get("ckpt_path"):
        raise UserError("train=false evaluates a trained model: pass ckpt_path=PATH/TO/best.ckpt")
    model = SERModule.from_checkpoint(cfg.ckpt_path)
    shared = [c for c in model.classes if c in cfg.data.emotions]
    if len(shared) < 2:
        raise UserError(f"the model knows {model.classes} and data.emotions are {list(cfg.data.emotions)}: "
                        "fewer than two emotions in common, nothing to evaluate")
    if shared != model.classes:
        log.info("Cross-corpus evaluation over the %d shared emotions %s", len(shared), shared)
        model.restrict_to(shared)
    datamodule = instantiate(cfg.data, emotions=shared, sample_rate=model.sample_rate,
                             min_samples=getattr(model.frontend, "n_fft", 1))
    return datamodule, model


def test(cfg, trainer, model, datamodule, loggers) -> dict:
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    ckpt = None  # train=false: the weights are already loaded
    if cfg.get("train", True):
        ckpt = best or None
        if not best:
            log.warning("No best checkpoint (fast_dev_run or no validation): testing the current weights")
    metrics = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt)[0]
    counts = model.confusion.compute().cpu().numpy().astype(int)
    results = make_results(cfg, metrics, counts, model.classes, datamodule,
                           best or ckpt or cfg.get("ckpt_path") or "")
    score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    if score is not None:
        results["val/uar_best"] = float(score)
    if trainer.global_rank == 0:
        out = Path(cfg.paths.output_dir)
        (out / "results.json").write_text(json.dumps(results, indent=2))
        save_confusion_matrix(counts, model.classes, out / "confusion_matrix.png",
                              title=f"{cfg.model.net._target_.rsplit('.', 1)[-1]} on {results['corpus']}: "
                                    f"test UAR {results['test/uar']:.3f}")
        print_results(results, out)
        log_to_wandb(loggers, results, out / "confusion_matrix.png")
    return results


def log_to_wandb(loggers, results: dict, figure: Path) -> None:
    """Per-class recall table, confusion matrix image and W&B's interactive confusion chart."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import wandb

        classes, counts = results["classes"], np.asarray(results["confusion_matrix"])
        # W&B's chart wants one (true, predicted) pair per clip: expand the counts back.
        true_index, pred_index = np.indices(counts.shape)
        truth = np.repeat(true_index.ravel(), counts.ravel()).tolist()
        preds = np.repeat(pred_index.ravel(), counts.ravel()).tolist()
        logger.experiment.log({
            "test/per_class_recall": wandb.Table(columns=["emotion", "recall"],
                                                 data=[[c, r] for c, r in results["per_class_recall"].items()]),
            "test/confusion_matrix_image": wandb.Image(str(figure)),
            "test/confusion_matrix": wandb.plot.confusion_matrix(y_true=truth, preds=preds, class_names=classes),
        })
        for key in ("test/uar", "test/war", "test/macro_f1"):
            logger.experiment.summary[key] = results[key]


def make_results(cfg, metrics: dict, counts: np.ndarray, classes: list[str], datamodule, best_ckpt) -> dict:
    recalls = normalise_rows(counts).diagonal()
    return {
        **{k: float(v) for k, v in sorted(metrics.items())},
        "classes": classes,
        "num_classes": len(classes),
        "per_class_recall": dict(zip(classes, map(float, recalls))),
        "confusion_matrix": counts.tolist(),
        **datamodule.split_counts(),
        "split": datamodule.split,
        "protocol": "speaker-dependent" if datamodule.split == "random" else "speaker-independent",
        "corpus": datamodule.corpus.name,
        "model": cfg.model.net._target_,
        "seed": cfg.get("seed"),
        "best_ckpt": str(best_ckpt),
        "trained": bool(cfg.get("train", True)),
    }


def print_results(results: dict, out: Path) -> None:
    table = Table(title=f"ser: {results['corpus']} ({results['protocol']}), test split")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("test/uar", "test/war", "test/macro_f1"):
        table.add_row(key, f"{results[key]:.4f}")
    for name, recall in results["per_class_recall"].items():
        table.add_row(f"  recall/{name}", f"{recall:.3f}")
    console = Console()
    console.print(table)
    console.print(f"Run folder: {out}")
