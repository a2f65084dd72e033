"""What a clip's target is, and everything that follows from it: the head's output size, the
loss, the metrics, what the test step records and what a test adds to results.json.

Networks and corpora do not know which task runs: a network is sized with ``num_classes`` (the
task's :attr:`~CategoricalTask.output_size`), a corpus yields targets, and the LightningModule
hands outputs and targets to its task. A second task (emotion attributes) is a second class
here with the same methods.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from ser.errors import not_one_of
from ser.metrics import classification_metrics, per_speaker_confusion, scores, speaker_bootstrap

CLASS_WEIGHTS = (None, "balanced")  # model.class_weights
# Fewer test speakers: every resample is the one speaker again, an interval of zero width that
# says nothing (TESS's speaker split tests on one of its two speakers), so none is given.
MIN_SPEAKERS_FOR_INTERVAL = 2


class CategoricalTask(nn.Module):
    """One emotion class per clip: cross-entropy, UAR (the headline), WAR and macro F1, and the
    test's confusion counts, per class and per speaker."""

    name = "categorical"
    headline = "uar"  # the validation metric a run's best is judged by (val/uar, val/uar_best)

    def __init__(self, classes: list[str], class_weights: str | None = None):
        super().__init__()
        if class_weights not in CLASS_WEIGHTS:
            raise not_one_of("model.class_weights", class_weights, CLASS_WEIGHTS)
        self.classes, self.class_weights = list(classes), class_weights
        # Not saved: the weights follow from the training split, and only training uses them.
        self.register_buffer("class_weight", None, persistent=False)
        self.train_metrics = classification_metrics(len(self.classes), "train/")
        self.val_metrics = classification_metrics(len(self.classes), "val/")
        self.test_metrics = classification_metrics(len(self.classes), "test/")
        self.confusion = MulticlassConfusionMatrix(len(self.classes))
        self._test_records: list[tuple[torch.Tensor, torch.Tensor]] = []  # preds, labels

    @property
    def output_size(self) -> int:
        return len(self.classes)

    def metrics(self, split: str):
        """The metric collection of ``split`` (train, val or test), logged as ``<split>/<name>``."""
        return getattr(self, f"{split}_metrics")

    # -- training -------------------------------------------------------------------------------
    def weigh_classes(self, counts: list[int]) -> None:
        """``class_weights=balanced``: weigh each class's loss by ``n / (classes * count)``
        (scikit-learn's "balanced"), so each class adds as much to the loss as the others,
        which is what UAR rewards. Nothing otherwise."""
        if self.class_weights != "balanced":
            return
        counts = torch.tensor(counts, dtype=torch.float32).clamp(min=1)
        self.class_weight = counts.sum() / (len(counts) * counts)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, targets, weight=self.class_weight)

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """What the metrics score: the class of each clip."""
        return outputs.argmax(-1)

    def probabilities(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.softmax(-1)

    # -- the test -------------------------------------------------------------------------------
    def start_test(self) -> None:
        self.confusion.reset()
        self._test_records = []

    def record(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        self.confusion.update(predictions, targets)
        self._test_records.append((predictions.detach(), targets))

    def test_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(predicted, true) class of every test clip this process scored, in loader order."""
        if not self._test_records:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        preds, labels = zip(*self._test_records)
        return torch.cat(preds).cpu().numpy(), torch.cat(labels).cpu().numpy()

    def test_record(self) -> dict:
        """What the test adds to results.json beside the logged metrics: classes, per-class
        recall and the confusion counts (gathered over every process)."""
        counts = self.confusion.compute().cpu().numpy().astype(int)
        support = counts.sum(1)
        recalls = np.divide(counts.diagonal(), support, out=np.zeros(len(counts)), where=support > 0)
        return {"task": self.name, "classes": self.classes, "num_classes": len(self.classes),
                "per_class_recall": dict(zip(self.classes, map(float, recalls))),
                "confusion_matrix": counts.tolist()}

    def by_speaker(self, speakers: list[str], resamples: int, seed: int) -> dict:
        """Per-speaker UAR and confusion counts of this process's test clips (``speakers``: the
        speaker of each, in loader order) and the 95% intervals of the scores from resampling
        speakers; with fewer than MIN_SPEAKERS_FOR_INTERVAL speakers no interval, and why."""
        preds, labels = self.test_predictions()
        names, counts = per_speaker_confusion(preds, labels, speakers[: len(preds)], len(self.classes))
        out = {"per_speaker_uar": dict(zip(names, map(float, scores(counts)["uar"]))),
               "per_speaker_confusion": dict(zip(names, counts.tolist()))}
        if not resamples:
            return out
        if len(names) < MIN_SPEAKERS_FOR_INTERVAL:
            out["bootstrap"] = {"unit": "speaker", "speakers": len(names), "resamples": 0,
                                "skipped": f"{len(names)} test speaker, too few to resample"}
            return out
        intervals = speaker_bootstrap(counts, resamples, seed=seed)
        out.update({f"test/{name}_ci95": bounds for name, bounds in intervals.items()})
        out["bootstrap"] = {"unit": "speaker", "resamples": resamples, "speakers": len(names)}
        return out

    # -- cross-corpus -----------------------------------------------------------------------------
    def restrict_to(self, classes: list[str]) -> torch.Tensor:
        """Score only ``classes`` (a subset of the trained ones, e.g. the emotions a second
        corpus shares); returns the index of their outputs among the trained ones."""
        missing = [c for c in classes if c not in self.classes]
        if missing:
            raise ValueError(f"the model was not trained on {missing}; it knows {self.classes}")
        index = torch.tensor([self.classes.index(c) for c in classes])
        self.classes = list(classes)
        self.test_metrics = classification_metrics(len(classes), "test/")
        self.confusion = MulticlassConfusionMatrix(len(classes))
        return index
