"""Metrics. Classification: per batch from torchmetrics (UAR, macro recall, is the headline),
and the speaker-resampled intervals of a split's scores from its confusion counts. Attributes:
the concordance correlation coefficient (CCC) per attribute and their mean, per batch from
torchmetrics, and the speaker-resampled intervals from per-speaker sums."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall

from ser.data.emotions import ATTRIBUTES

IGNORE = -100  # the class target of a clip without a category (task=both): no loss, no count


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """UAR, WAR and macro F1. Macro F1 is the unweighted mean of each class's F1 over every
    class (scikit-learn's f1_score(average="macro"), as the Odyssey 2024 challenge scores it)."""
    return MetricCollection(
        {
            "uar": MulticlassRecall(num_classes, average="macro", ignore_index=IGNORE),  # unweighted average recall
            "war": MulticlassAccuracy(num_classes, average="micro", ignore_index=IGNORE),  # weighted = plain accuracy
            "macro_f1": MulticlassF1Score(num_classes, average="macro", ignore_index=IGNORE),
        },
        prefix=prefix,
    )


class AttributeCCC(Metric):
    """The CCC of one attribute (``column``) or the mean over them (None), from population
    moments, as the MSP-Podcast challenges' scoring computes it (``np.var``, ``np.corrcoef``;
    torchmetrics' ConcordanceCorrCoef uses sample moments, which differ by about 1/n). Its
    state is :func:`attribute_sums`, summed over batches and processes."""

    full_state_update = False

    def __init__(self, column: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.column = column
        self.add_state("sums", torch.zeros(6, len(ATTRIBUTES), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        x, y = preds.double(), target.double()
        self.sums += torch.stack([torch.full_like(x[0], len(x)), x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0),
                                  (x * y).sum(0)])

    def compute(self) -> torch.Tensor:
        ccc = torch.from_numpy(ccc_of_sums(self.sums.cpu().numpy()))
        return (ccc.mean() if self.column is None else ccc[self.column]).float()


def attribute_metrics(prefix: str) -> MetricCollection:
    """``ccc`` (the mean over attributes) and ``ccc_<attribute>`` for each."""
    return MetricCollection({"ccc": AttributeCCC(),
                             **{f"ccc_{name}": AttributeCCC(i) for i, name in enumerate(ATTRIBUTES)}},
                            prefix=prefix, compute_groups=False)


def ccc_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - CCC of each attribute over the batch, averaged (the attribute challenges' loss)."""
    mean_x, mean_y = outputs.mean(0), targets.mean(0)
    var_x, var_y = outputs.var(0, unbiased=False), targets.var(0, unbiased=False)
    cov = ((outputs - mean_x) * (targets - mean_y)).mean(0)
    ccc = 2 * cov / (var_x + var_y + (mean_x - mean_y) ** 2 + 1e-8)
    return (1 - ccc).mean()


def attribute_sums(preds: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``[6, A]``: count, sum x, sum y, sum x^2, sum y^2, sum xy of each attribute (x: predicted);
    they add up over speakers, so a resample's CCC is the CCC of its speakers' sums."""
    x, y = np.asarray(preds, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    return np.stack([np.full(x.shape[1:], len(x)), x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0),
                     (x * y).sum(0)])


def ccc_of_sums(sums: np.ndarray) -> np.ndarray:
    """The CCC of each attribute from :func:`attribute_sums` ``[..., 6, A]`` (population moments)."""
    n, sx, sy, sxx, syy, sxy = np.moveaxis(np.asarray(sums, dtype=np.float64), -2, 0)
    n = np.maximum(n, 1)
    mx, my = sx / n, sy / n
    var_x, var_y, cov = sxx / n - mx ** 2, syy / n - my ** 2, sxy / n - mx * my
    return 2 * cov / np.maximum(var_x + var_y + (mx - my) ** 2, 1e-12)


def attribute_bootstrap(sums: np.ndarray, resamples: int, seed: int = 0, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile intervals of each attribute's CCC and their mean, resampling speakers
    (``sums``: per speaker ``[S, 6, A]``)."""
    resampled = ccc_of_sums(np.einsum("rs,sij->rij", speaker_draws(len(sums), resamples, seed), sums))  # [R, A]
    out = {f"ccc_{name}": percentile_interval(resampled[:, i], level) for i, name in enumerate(ATTRIBUTES)}
    out["ccc"] = percentile_interval(resampled.mean(-1), level)
    return out


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
