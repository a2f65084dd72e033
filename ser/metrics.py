"""Classification metrics: per batch from torchmetrics (UAR, macro recall, is the headline),
and the speaker-resampled intervals of a split's scores from its confusion counts."""

from __future__ import annotations

import numpy as np
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "uar": MulticlassRecall(num_classes, average="macro"),  # unweighted average recall
            "war": MulticlassAccuracy(num_classes, average="micro"),  # weighted = plain accuracy
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )


def scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """UAR, WAR and macro F1 of confusion counts ``[..., true, predicted]``, over the classes
    present (a resample of speakers may lack one; a split always has them all)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    support = confusion.sum(-1)
    predicted = confusion.sum(-2)
    hits = np.diagonal(confusion, axis1=-2, axis2=-1)
    present = support > 0
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=present)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(hits), where=precision + recall > 0)
    classes = present.sum(-1).clip(min=1)
    return {"uar": (recall * present).sum(-1) / classes,
            "war": hits.sum(-1) / support.sum(-1).clip(min=1),
            "macro_f1": (f1 * present).sum(-1) / classes}


def per_speaker_confusion(preds: np.ndarray, labels: np.ndarray, speakers: list[str], num_classes: int):
    """(speaker names, confusion counts ``[speakers, C, C]``) of one split's predictions."""
    names = sorted(set(speakers))
    position = {name: i for i, name in enumerate(names)}
    index = np.array([position[s] for s in speakers], dtype=np.int64)
    counts = np.zeros((len(names), num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (index, labels, preds), 1)
    return names, counts


def speaker_bootstrap(counts: np.ndarray, resamples: int, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile intervals of UAR, WAR and macro F1 when the *speakers* are resampled with
    replacement (each draw keeps all of a drawn speaker's clips): speakers are the unit that
    varies between studies, and clips of one speaker are not independent, so resampling clips
    would give intervals too narrow. ``counts``: per-speaker confusion counts ``[S, C, C]``."""
    resampled = np.einsum("rs,sij->rij", speaker_draws(len(counts), resamples, seed), counts)
    return {name: percentile_interval(values, level) for name, values in scores(resampled).items()}


def paired_speaker_bootstrap(counts_a: np.ndarray, counts_b: np.ndarray, resamples: int, seed: int = 0,
                             level: float = 0.95) -> dict:
    """UAR(a) - UAR(b) of two models scored on the same test clips: its percentile interval
    and a two-sided p-value when the speakers are resampled, the *same* draw for both models
    (paired: what varies between draws is who was tested, and both models meet the same
    speakers). ``counts_*``: per-speaker confusion counts ``[S, C, C]``, speakers aligned."""
    weights = speaker_draws(len(counts_a), resamples, seed)
    differences = (scores(np.einsum("rs,sij->rij", weights, counts_a))["uar"]
                   - scores(np.einsum("rs,sij->rij", weights, counts_b))["uar"])
    observed = float(scores(np.sum(counts_a, 0))["uar"] - scores(np.sum(counts_b, 0))["uar"])
    p = min(1.0, 2 * min(float(np.mean(differences <= 0)), float(np.mean(differences >= 0))))
    return {"difference": observed, "ci95": percentile_interval(differences, level), "p": p}


def speaker_draws(speakers: int, resamples: int, seed: int) -> np.ndarray:
    """``[resamples, speakers]``: how often each speaker is drawn in each resample."""
    draws = np.random.default_rng(seed).integers(speakers, size=(resamples, speakers))
    return np.stack([np.bincount(row, minlength=speakers) for row in draws])


def percentile_interval(values: np.ndarray, level: float) -> list[float]:
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]
