"""results.json: the one module that builds, writes, reads and formats a run's results.

Every other module (train, report, grid, aggregate, sweep) goes through here, never through
string keys of its own: what a run's folder holds is decided once.

A results.json is one flat JSON object (schema :data:`SCHEMA`):

* ``schema``; the task (``task``) and its ``classes``;
* scores: ``test/<metric>`` for each of :data:`METRICS`, their 95% speaker intervals
  ``test/<metric>_ci95`` (absent with too few test speakers: ``bootstrap.skipped`` says why),
  ``per_class_recall``, ``confusion_matrix``, ``per_speaker_uar``, ``per_speaker_confusion``,
  ``test_clips`` (a digest of the clips scored: two runs with the same one can be compared
  speaker by speaker);
* training: ``val/uar_best``, ``train/uar``, ``epochs``, ``wall_seconds``;
* the run: ``model`` and ``data`` (the config choices it is named by), ``model_class``,
  ``corpus``, ``split``, ``protocol``, ``seed``, ``tested_ckpt``, ``trained``,
  ``n_train``/``n_val``/``n_test``;
* ``cross_corpus`` (with ``test_on``): per corpus, the :data:`CROSS_CORPUS_KEYS` of its test.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

SCHEMA = 2  # 2: schema and task recorded; no interval from a single test speaker
METRICS = ("test/uar", "test/war", "test/macro_f1")  # the test scores, headline first
# What results.json keeps of each cross-corpus test (the full record is the corpus's own run's).
CROSS_CORPUS_KEYS = (*METRICS, *(f"{m}_ci95" for m in METRICS), "classes", "confusion_matrix", "n_test",
                     "per_speaker_uar", "bootstrap")
FILE = "results.json"


class ResultsError(ValueError):
    pass


# -- building ---------------------------------------------------------------------------------------
def build(tested: dict, run: dict, fit: dict, **extra) -> dict:
    """One run's results: what the test said, what the run was, what training said."""
    return {"schema": SCHEMA, **tested, **run, **fit, **extra}


def cross_corpus_entry(tested: dict) -> dict:
    """What results.json keeps of a test on another corpus."""
    return {key: value for key, value in tested.items() if key in CROSS_CORPUS_KEYS}


# -- writing and reading -----------------------------------------------------------------------------
def write(results: dict, folder: str | Path) -> Path:
    path = Path(folder) / FILE
    path.write_text(json.dumps(results, indent=2))
    return path


def read(path: str | Path) -> dict:
    """A results.json, in the current schema (files of schema 1, written before the schema was
    recorded, are read as categorical runs)."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path} is not a readable results.json: {err}") from None
    version = results.get("schema", 1)
    if version > SCHEMA:
        raise ResultsError(f"{path} has results schema {version}; this ser reads up to {SCHEMA}: update ser")
    if version == 1:
        results = {**results, "schema": SCHEMA, "task": "categorical"}
    return results


def find(folder: str | Path) -> list[tuple[Path, dict]]:
    """(path, results) of every results.json below ``folder``, job folders in numeric order."""
    return [(path, read(path)) for path in sorted(Path(folder).rglob(FILE), key=natural_order)]


def natural_order(path: Path) -> list[tuple[int, int | str]]:
    """Job folders 0, 1, ..., 10 in numeric order; numbers sort before names."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in path.parts]


# -- formatting --------------------------------------------------------------------------------------
def with_interval(value: float, bounds: list[float] | None, digits: int = 3) -> str:
    """``0.512 [0.431, 0.598]``, or the value alone when it has no interval."""
    if not bounds:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std over runs (std 0 for a single run)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def score_text(results: dict, metric: str, digits: int = 3) -> str:
    """A test score with its speaker interval, or with the reason it has none."""
    text = with_interval(results[metric], results.get(f"{metric}_ci95"), digits)
    skipped = results.get("bootstrap", {}).get("skipped")
    return f"{text} (no interval: {skipped})" if skipped and not results.get(f"{metric}_ci95") else text


def chance(results: dict) -> float:
    return 1 / results["num_classes"]


def table(results: dict):
    """The test scores of one run as a rich table (what train.py prints at the end)."""
    from rich.table import Table

    out = Table(title=f"ser: {results['model']} on {results['data']} ({results['protocol']}), test split")
    out.add_column("metric")
    out.add_column("value [95% interval, speakers resampled]", justify="right")
    for key in METRICS:
        out.add_row(key, score_text(results, key, digits=4))
    for name, recall in results["per_class_recall"].items():
        out.add_row(f"  recall/{name}", f"{recall:.3f}")
    for name, tested in results.get("cross_corpus", {}).items():
        if name != results["data"]:
            out.add_row(f"test/uar on {name} ({len(tested['classes'])} shared)",
                        score_text(tested, "test/uar", digits=4))
    return out
