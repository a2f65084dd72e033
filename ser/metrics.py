"""Classification metrics, all from torchmetrics. UAR (macro recall) is the headline."""

from __future__ import annotations

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
