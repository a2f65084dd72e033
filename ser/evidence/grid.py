"""Cross-corpus grids: train on each corpus of a list, test every model on every corpus.

    python train.py -m data=cremad,ravdess,emodb test_on=[cremad,ravdess,emodb] paths.data_dir=/data

Each job of that ordinary Hydra multirun (any launcher: joblib, SLURM) trains on its ``data``
and scores the checkpoint it tests (``test_ckpt``) on the test split of every corpus in ``test_on``, each drawn by
the job's own protocol (split, fractions, seed) and scored over the emotions it shares with the
model (``results.json``: ``cross_corpus``). When the multirun ends, :class:`CrossCorpusGrid`
writes the train x test matrix of UAR with its speaker intervals into the sweep folder as
``cross_corpus.json``, ``cross_corpus.md`` and a heatmap per model; ``ser-report`` shows it too.

Nothing here imports torch or Lightning: it runs before them (``train.py``) and after the jobs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from ser.errors import ConfigError, not_one_of
from ser.evidence import results as results_file
from ser.evidence.results import mean_std, with_interval

log = logging.getLogger(__name__)
CORPUS_KEYS = ("corpus", "root", "emotions")  # what a test corpus brings; the rest is the run's protocol


def add_test_corpora(cfg: DictConfig) -> None:
    """Compose the data config of each corpus named in ``test_on`` into ``cfg.test_corpora``:
    that corpus's parser, folder and emotions with this run's protocol (split, fractions,
    seed, batch sizes, cache), so config.yaml records exactly what each was tested on."""
    names = list(cfg.get("test_on") or [])
    if not names:
        return
    if cfg.data.split == "file":
        raise ConfigError("test_on with data.split=file: a split file lists one corpus's clips, so the "
                          "other corpora have no test split from it; use data.split=speaker or kfold.")
    own = OmegaConf.to_container(cfg.data, resolve=False)
    corpora = {}
    for name in dict.fromkeys(names):
        theirs = OmegaConf.to_container(corpus_config(name), resolve=False)
        corpora[name] = {**own, **{key: theirs.get(key) for key in CORPUS_KEYS}}
    with open_dict(cfg):
        cfg.test_corpora = corpora  # interpolations (${paths.data_dir}) resolve in this run's config


def corpus_config(name: str) -> DictConfig:
    """The ``data`` node of ``data=name``, composed by the running Hydra app's config loader."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    try:
        return compose(config_name="train", overrides=[f"data={name}"]).data
    except MissingConfigException:
        options = GlobalHydra.instance().config_loader().get_group_options("data")
        raise not_one_of("test_on", name, options) from None


# -- the grid of a multirun ---------------------------------------------------------------------
def cross_corpus_grid(folder: str | Path) -> dict:
    """``{model: {"train": [...], "test": [...], "cells": [[cell or None]]}}`` from every
    results.json below ``folder`` that holds cross-corpus scores. A cell is the mean UAR over
    the runs (seeds, folds) that trained on that corpus, with their count, their std and,
    for a single run, its 95% speaker interval."""
    scored: dict[str, dict[tuple[str, str], list[dict]]] = {}
    order: dict[str, tuple[dict, dict]] = {}
    for _, results in results_file.find(folder):
        if not results.get("cross_corpus"):
            continue
        model = results["model"]
        rows, cols = order.setdefault(model, ({}, {}))
        rows[results["data"]] = None
        for test_name, tested in results["cross_corpus"].items():
            cols[test_name] = None
            scored.setdefault(model, {}).setdefault((results["data"], test_name), []).append(tested)
    grid = {}
    for model, (rows, cols) in order.items():
        cells = [[cell(scored[model].get((train, test), [])) for test in cols] for train in rows]
        grid[model] = {"train": list(rows), "test": list(cols), "cells": cells}
    return grid


def cell(tested: list[dict]) -> dict | None:
    if not tested:
        return None
    key = results_file.headline(tested[0])  # test/uar, or test/ccc for attributes
    uars = [t[key] for t in tested]
    mean, std = mean_std(uars)
    return {key[5:]: mean, "score": mean, "metric": key[5:], "std": std, "runs": len(uars),
            "ci95": tested[0].get(f"{key}_ci95") if len(uars) == 1 else None,
            "classes": tested[0].get("classes"), "n_test": tested[0].get("n_test")}


def cell_text(c: dict | None) -> str:
    if c is None:
        return "—"
    if c["runs"] > 1:
        return f"{c['score']:.3f} ± {c['std']:.3f} (n={c['runs']})"
    return with_interval(c["score"], c["ci95"])


def grid_markdown(grid: dict) -> str:
    """One train x test table of UAR per model (rows: trained on; columns: tested on)."""
    parts = []
    for model, g in grid.items():
        lines = [f"**{model}**: test UAR [95% interval, speakers resampled]; rows trained on, columns tested on",
                 "", "| trained on \\ tested on | " + " | ".join(g["test"]) + " |",
                 "|---|" + "---:|" * len(g["test"])]
        for train, row in zip(g["train"], g["cells"]):
            lines.append(f"| {train} | " + " | ".join(cell_text(c) for c in row) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_grid(folder: str | Path) -> dict:
    """cross_corpus.json, cross_corpus.md and cross_corpus_<model>.png in ``folder``."""
    from ser.evidence.plots import save_grid_heatmap

    folder = Path(folder)
    grid = cross_corpus_grid(folder)
    if not grid:
        return grid
    (folder / "cross_corpus.json").write_text(json.dumps(grid, indent=2))
    (folder / "cross_corpus.md").write_text(grid_markdown(grid))
    for model, g in grid.items():
        save_grid_heatmap(g, folder / f"cross_corpus_{model}.png", title=f"{model}: test UAR, trained x tested on")
    log.info("Cross-corpus grid of %d model(s) written to %s", len(grid), folder / "cross_corpus.md")
    return grid


class CrossCorpusGrid(Callback):
    """Hydra callback (conf/hydra/default.yaml): at the end of a multirun whose jobs tested on
    ``test_on`` corpora, write the grid into the sweep folder. Other multiruns: nothing."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        write_grid(config.hydra.sweep.dir)
