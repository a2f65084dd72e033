"""The training pipeline behind ``train.py``: compose -> fit -> test -> report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

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

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
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


def test(cfg, trainer, model, datamodule, loggers) -> dict:
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.get("train", True):
        ckpt = best or None
        if not best:
            log.warning("No best checkpoint (fast_dev_run or no validation): testing the current weights")
    else:
        ckpt = cfg.get("ckpt_path")
    metrics = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt)[0]
    counts = model.confusion.compute().cpu().numpy().astype(int)
    results = make_results(cfg, metrics, counts, model.classes, datamodule, best or ckpt or "")
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
    return results


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
