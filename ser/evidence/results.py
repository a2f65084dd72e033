"""results.json: the one module that builds, writes, reads and formats a run's results.

Every other module (train, report, grid, aggregate, sweep) goes through here, never through
string keys of its own: what a run's folder holds is decided once.

A results.json is one flat JSON object (schema :data:`SCHEMA`):

* ``schema``; the task (``task``), its ``headline`` metric and its ``classes`` (categories) or
  ``attributes`` (``scale``: the training corpus's rating scale);
* scores: ``test/<metric>`` for each of :func:`metrics_of` (UAR, WAR, macro F1; the CCC of
  each attribute and their mean), their 95% speaker intervals
  ``test/<metric>_ci95`` (absent with too few test speakers: ``bootstrap.skipped`` says why),
  ``per_class_recall``, ``confusion_matrix``, ``per_speaker_uar``, ``per_speaker_confusion``
  (categories), ``per_speaker_ccc`` and ``per_speaker_sums`` (attributes), ``test_clips`` (a digest of the clips scored: two runs with the same one can be compared
  speaker by speaker);
* training: ``val/uar_best``, ``train/uar``, ``epochs``, ``wall_seconds``;
* the run: ``model`` and ``data`` (the config choices it is named by), ``model_class``,
  ``corpus``, ``split``, ``protocol``, ``fold`` and ``test_group`` (a fold's test session),
  ``seed``, ``tested_ckpt``, ``trained``, ``n_train``/``n_val``/``n_test``;
* ``cross_corpus`` (with ``test_on``): per corpus, the :data:`CROSS_CORPUS_KEYS` of its test.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

SCHEMA = 2  # 2: schema, task and headline recorded; no interval from a single test speaker
CATEGORICAL_METRICS = ("test/uar", "test/war", "test/macro_f1")  # headline first
ATTRIBUTE_METRICS = ("test/ccc", "test/ccc_arousal", "test/ccc_valence", "test/ccc_dominance")
METRICS_OF_TASK = {"categorical": CATEGORICAL_METRICS, "attributes": ATTRIBUTE_METRICS,
                   "both": CATEGORICAL_METRICS + ATTRIBUTE_METRICS}
_ALL = CATEGORICAL_METRICS + ATTRIBUTE_METRICS
# What results.json keeps of each cross-corpus test (the full record is the corpus's own run's).
CROSS_CORPUS_KEYS = (*_ALL, *(f"{m}_ci95" for m in _ALL), "task", "headline", "classes", "confusion_matrix",
                     "n_test", "per_speaker_uar", "per_speaker_ccc", "bootstrap")
FILE = "results.json"
PREDICTIONS = "test_predictions.csv"  # path, speaker, then the task's columns (true and predicted)


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
        results = {**results, "schema": SCHEMA, "task": "categorical", "headline": "test/uar"}
    return results


def metrics_of(results: dict) -> tuple[str, ...]:
    """The test metrics a run's task reports, its headline first."""
    return METRICS_OF_TASK[results.get("task", "categorical")]


def headline(results: dict) -> str:
    """The key of the run's headline score (test/uar, or test/ccc for attributes)."""
    return results.get("headline", "test/uar")


def write_predictions(folder: str | Path, clips: list[tuple[str, str]], columns: dict[str, list]) -> Path:
    """test_predictions.csv: each test clip's path and speaker with the task's columns."""
    path = Path(folder) / PREDICTIONS
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "speaker", *columns])
        writer.writerows([p, s, *row] for (p, s), row in zip(clips, zip(*columns.values())))
    return path


def read_predictions(folder: str | Path) -> list[dict[str, str]]:
    path = Path(folder) / PREDICTIONS
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


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
    """The headline score of guessing: 1 / classes for UAR, 0 for CCC."""
    return 1 / results["num_classes"] if headline(results) == "test/uar" else 0.0


def table(results: dict):
    """The test scores of one run as a rich table (what train.py prints at the end)."""
    from rich.table import Table

    out = Table(title=f"ser: {results['model']} on {results['data']} ({results['protocol']}), test split")
    out.add_column("metric")
    out.add_column("value [95% interval, speakers resampled]", justify="right")
    for key in metrics_of(results):
        out.add_row(key, score_text(results, key, digits=4))
    for name, recall in results.get("per_class_recall", {}).items():
        out.add_row(f"  recall/{name}", f"{recall:.3f}")
    for name, tested in results.get("cross_corpus", {}).items():
        if name != results["data"]:
            shared = f" ({len(tested['classes'])} shared)" if tested.get("classes") else ""
            out.add_row(f"{headline(tested)} on {name}{shared}", score_text(tested, headline(tested), digits=4))
    return out
