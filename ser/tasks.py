"""What a clip's target is, and everything that follows from it: the head's output size, the
loss, the metrics, what the test step records and what a test adds to results.json.

Networks and corpora do not know which task runs: a network is sized with ``num_classes`` (the
task's :attr:`output_size`), the data side asks the task for each clip's target
(:meth:`target`), and the LightningModule hands outputs and targets to its task.

* ``task=categorical``: one emotion per clip; cross-entropy; UAR (headline), WAR, macro F1.
* ``task=attributes``: arousal, valence and dominance, each mapped to [0, 1]; 1 - CCC (or MSE);
  the CCC of each and their mean (headline).
* ``task=both``: both from one network (outputs: the classes' logits, then the attributes);
  the two losses weighted; UAR is the headline.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from ser.data.emotions import ATTRIBUTES
from ser.errors import ConfigError, not_one_of
from ser.metrics import (
    IGNORE,
    attribute_bootstrap,
    attribute_metrics,
    attribute_sums,
    ccc_loss,
    ccc_of_sums,
    classification_metrics,
    per_speaker_confusion,
    scores,
    speaker_bootstrap,
)
from ser.readout import Readout

TASKS = ("categorical", "attributes", "both")  # task.name
CLASS_WEIGHTS = (None, "balanced")  # model.class_weights
ATTRIBUTE_LOSSES = ("ccc", "mse")  # task.loss
# Fewer test speakers: every resample is the one speaker again, an interval of zero width that
# says nothing (TESS's speaker split tests on one of its two speakers), so none is given.
MIN_SPEAKERS_FOR_INTERVAL = 2
SPLITS = ("train", "val", "test")


def build_task(cfg: dict | None, classes: list[str], class_weights: str | None = None) -> nn.Module:
    """The task a ``task`` config names (None: categorical, as checkpoints before tasks were)."""
    cfg = dict(cfg or {"name": "categorical"})
    name = cfg.pop("name", "categorical")
    cfg.pop("headline", None)  # the callbacks' monitor reads it; the class below is its owner (checked)
    if name not in TASKS:
        raise not_one_of("task.name", name, TASKS)
    task = {"categorical": lambda: CategoricalTask(classes, class_weights),
            "attributes": lambda: AttributesTask(classes, **cfg),
            "both": lambda: BothTask(classes, class_weights, **cfg)}[name]
    try:
        return task()
    except TypeError as err:
        raise ConfigError(f"the task config does not work: {err}") from None


def _interval_or_why(names: list[str], resamples: int) -> dict | None:
    """None where intervals can be drawn; else the bootstrap record that says why none is."""
    if not resamples:
        return {}
    if len(names) < MIN_SPEAKERS_FOR_INTERVAL:
        return {"bootstrap": {"unit": "speaker", "speakers": len(names), "resamples": 0,
                              "skipped": f"{len(names)} test speaker, too few to resample"}}
    return None


class CategoricalTask(nn.Module):
    """One emotion class per clip: cross-entropy, UAR (the headline), WAR and macro F1, and the
    test's confusion counts, per class and per speaker."""

    name = "categorical"
    headline = "uar"  # the validation metric a run's best is judged by (val/uar, val/uar_best)
    needs_emotion, needs_attributes = True, False

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
        self.confusion = MulticlassConfusionMatrix(len(self.classes), ignore_index=IGNORE)
        self._test_records: list[tuple[torch.Tensor, torch.Tensor]] = []  # outputs, targets

    @property
    def output_size(self) -> int:
        return len(self.classes)

    def target(self, class_index: int | None, attributes=None) -> int:
        return class_index

    def metrics(self, split: str) -> MetricCollection:
        """The metrics of ``split`` (train, val or test), logged as ``<split>/<name>``."""
        return getattr(self, f"{split}_metrics")

    def headline_metric(self, split: str):
        return getattr(self, f"{split}_metrics")[self.headline]

    # -- training -------------------------------------------------------------------------------
    def learn_scale(self, scale) -> None:
        """Nothing: categories have no rating scale."""

    def weigh_classes(self, counts: list[int]) -> None:
        """``class_weights=balanced``: weigh each class's loss by ``n / (classes * count)``
        (scikit-learn's "balanced"), so each class adds as much to the loss as the others,
        which is what UAR rewards. Nothing otherwise."""
        if self.class_weights != "balanced":
            return
        counts = torch.tensor(counts, dtype=torch.float32).clamp(min=1)
        self.class_weight = counts.sum() / (len(counts) * counts)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs, targets.long(), weight=self.class_weight, ignore_index=IGNORE)

    def update(self, split: str, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        getattr(self, f"{split}_metrics").update(outputs.argmax(-1), targets.long())

    def readout(self, outputs: torch.Tensor) -> torch.Tensor:
        """What ser-predict reports of each clip's outputs (probabilities; averaged over windows)."""
        return outputs.softmax(-1)

    def reading(self) -> Readout:
        """What the values of a readout are (ser-predict describes them with it)."""
        return Readout(self.name, tuple(self.classes))

    # -- the test -------------------------------------------------------------------------------
    def start_test(self) -> None:
        self.confusion.reset()
        self._test_records = []

    def record(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.confusion.update(outputs.argmax(-1), targets.long())
        self._test_records.append((outputs.detach(), targets))

    def test_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(outputs, targets) of every test clip this process scored, in loader order."""
        if not self._test_records:
            return np.zeros((0, self.output_size)), np.zeros(0)
        outputs, targets = zip(*self._test_records)
        return torch.cat(outputs).float().cpu().numpy(), torch.cat(targets).cpu().numpy()

    def test_record(self) -> dict:
        """What the test adds to results.json beside the logged metrics: classes, per-class
        recall and the confusion counts (gathered over every process)."""
        counts = self.confusion.compute().cpu().numpy().astype(int)
        support = counts.sum(1)
        recalls = np.divide(counts.diagonal(), support, out=np.zeros(len(counts)), where=support > 0)
        return {"task": self.name, "headline": f"test/{self.headline}", "classes": self.classes,
                "num_classes": len(self.classes), "per_class_recall": dict(zip(self.classes, map(float, recalls))),
                "confusion_matrix": counts.tolist()}

    def by_speaker(self, speakers: list[str], resamples: int, seed: int) -> dict:
        """Per-speaker UAR and confusion counts of this process's test clips (``speakers``: the
        speaker of each, in loader order) and the 95% intervals of the scores from resampling
        speakers; with fewer than MIN_SPEAKERS_FOR_INTERVAL speakers no interval, and why."""
        outputs, targets = self.test_outputs()
        keep = targets != IGNORE
        names, counts = per_speaker_confusion(outputs.argmax(-1)[keep], targets[keep].astype(np.int64),
                                              [s for s, k in zip(speakers, keep) if k], len(self.classes))
        out = {"per_speaker_uar": dict(zip(names, map(float, scores(counts)["uar"]))),
               "per_speaker_confusion": dict(zip(names, counts.tolist()))}
        skipped = _interval_or_why(names, resamples)
        if skipped is not None:
            return {**out, **skipped}
        intervals = speaker_bootstrap(counts, resamples, seed=seed)
        out.update({f"test/{name}_ci95": bounds for name, bounds in intervals.items()})
        out["bootstrap"] = {"unit": "speaker", "resamples": resamples, "speakers": len(names)}
        return out

    def prediction_columns(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, list]:
        """The columns of test_predictions.csv: the true and the predicted class of each clip,
        and the probability of each class (what ser-fuse averages)."""
        probs = torch.from_numpy(np.asarray(outputs, dtype=np.float64)).softmax(-1).numpy()
        return {"true": [self.classes[int(t)] if t != IGNORE else "" for t in targets],
                "predicted": [self.classes[int(i)] for i in outputs.argmax(-1)],
                **{f"prob_{c}": [round(float(p), 6) for p in probs[:, i]] for i, c in enumerate(self.classes)}}

    def outputs_from_columns(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(outputs, targets) of test_predictions.csv's rows, as :meth:`prediction_columns` wrote
        them: log-probabilities (the logits up to a constant per clip) and class indices."""
        missing = [f"prob_{c}" for c in self.classes if rows and f"prob_{c}" not in rows[0]]
        if missing:
            raise ValueError(f"no class probabilities ({', '.join(missing)}): written before ser kept them; "
                             "score the run's checkpoint again with train=false ckpt_path=... to write them")
        probs = np.array([[float(r[f"prob_{c}"]) for c in self.classes] for r in rows]).reshape(len(rows), -1)
        targets = np.array([self.classes.index(r["true"]) if r["true"] else IGNORE for r in rows], dtype=np.int64)
        return np.log(np.clip(probs, 1e-12, None)), targets

    def fuse(self, outputs: list[np.ndarray], weights: list[float]) -> np.ndarray:
        """Several models' outputs for the same clips -> one: the weighted mean of their class
        probabilities (as log-probabilities)."""
        probs = sum(w * torch.from_numpy(o).double().softmax(-1).numpy() for o, w in zip(outputs, weights))
        return np.log(np.clip(probs, 1e-12, None))

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
        self.confusion = MulticlassConfusionMatrix(len(classes), ignore_index=IGNORE)
        return index


class AttributesTask(nn.Module):
    """Arousal, valence and dominance per clip, each on [0, 1] (every corpus's scale mapped to
    it): a linear output per attribute, 1 - CCC averaged over them (or MSE) as the loss, the CCC
    of each and their mean (the headline) as metrics. The training corpus's rating scale, into
    which ser-predict maps its values back, is handed over with the training split and kept in
    the checkpoint (:meth:`learn_scale`)."""

    name = "attributes"
    headline = "ccc"
    needs_emotion, needs_attributes = False, True

    def __init__(self, classes: list[str] = (), loss: str = "ccc"):
        super().__init__()
        if loss not in ATTRIBUTE_LOSSES:
            raise not_one_of("task.loss", loss, ATTRIBUTE_LOSSES)
        self.classes, self.loss_name = list(classes), loss
        self.register_buffer("rating_scale", torch.full((2,), float("nan"), dtype=torch.float64))  # NaN: unknown
        self.train_metrics, self.val_metrics, self.test_metrics = (attribute_metrics(f"{s}/") for s in SPLITS)
        self._test_records: list[tuple[torch.Tensor, torch.Tensor]] = []

    output_size = len(ATTRIBUTES)

    def target(self, class_index: int | None, attributes) -> list[float]:
        return list(attributes)

    metrics = CategoricalTask.metrics
    headline_metric = CategoricalTask.headline_metric
    test_outputs = CategoricalTask.test_outputs

    def start_test(self) -> None:
        self._test_records = []

    def weigh_classes(self, counts: list[int]) -> None:
        """Nothing: attributes have no classes to weigh."""

    def learn_scale(self, scale: tuple[float, float] | None) -> None:
        if scale is not None:
            self.rating_scale.copy_(torch.tensor(scale, dtype=torch.float64))

    @property
    def scale(self) -> tuple[float, float] | None:
        return None if torch.isnan(self.rating_scale).any() else tuple(map(float, self.rating_scale))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs, targets = outputs.float(), targets.float()
        return ccc_loss(outputs, targets) if self.loss_name == "ccc" else nn.functional.mse_loss(outputs, targets)

    def update(self, split: str, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        getattr(self, f"{split}_metrics").update(outputs.float(), targets.float())

    def readout(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float()

    def reading(self) -> Readout:
        return Readout(self.name, attributes=tuple(ATTRIBUTES), scale=self.scale)

    def record(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self._test_records.append((outputs.detach().float(), targets.float()))

    def test_record(self) -> dict:
        return {"task": self.name, "headline": f"test/{self.headline}", "attributes": list(ATTRIBUTES),
                "attribute_range": [0.0, 1.0], "scale": list(self.scale) if self.scale else None}

    def by_speaker(self, speakers: list[str], resamples: int, seed: int) -> dict:
        """Per-speaker CCC sums and scores, and the 95% intervals from resampling speakers."""
        outputs, targets = self.test_outputs()
        rows_of: dict[str, list[int]] = {}
        for i, speaker in enumerate(speakers[: len(outputs)]):  # one pass: MSP-Podcast's test has thousands
            rows_of.setdefault(speaker, []).append(i)
        names = sorted(rows_of)
        sums = np.stack([attribute_sums(outputs[rows_of[name]], targets[rows_of[name]]) for name in names])
        out = {"per_speaker_ccc": {name: float(ccc_of_sums(total).mean()) for name, total in zip(names, sums)},
               "per_speaker_sums": {name: total.tolist() for name, total in zip(names, sums)}}
        skipped = _interval_or_why(names, resamples)
        if skipped is not None:
            return {**out, **skipped}
        out.update({f"test/{name}_ci95": bounds for name, bounds in attribute_bootstrap(sums, resamples, seed).items()})
        out["bootstrap"] = {"unit": "speaker", "resamples": resamples, "speakers": len(names)}
        return out

    def prediction_columns(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, list]:
        columns = {}
        for i, name in enumerate(ATTRIBUTES):
            columns[f"true_{name}"] = [round(float(v), 6) for v in targets[:, i]]
            columns[f"predicted_{name}"] = [round(float(v), 6) for v in outputs[:, i]]
        return columns

    def outputs_from_columns(self, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(values, true values) of test_predictions.csv's rows, on the [0, 1] range scored."""
        def read(prefix: str) -> np.ndarray:
            return np.array([[float(r[f"{prefix}_{a}"]) for a in ATTRIBUTES] for r in rows]).reshape(len(rows), -1)

        return read("predicted"), read("true")

    def fuse(self, outputs: list[np.ndarray], weights: list[float]) -> np.ndarray:
        """The weighted mean of several models' values for the same clips."""
        return sum(w * o for o, w in zip(outputs, weights))


class BothTask(nn.Module):
    """Categories and attributes from one network: outputs are the classes' logits followed by
    the attributes; the loss is ``weights.categorical * CE + weights.attributes * attribute
    loss``. A clip without a category (IEMOCAP xxx, MSP-Podcast X) still teaches the attributes."""

    name = "both"
    headline = "uar"
    needs_emotion, needs_attributes = False, True

    def __init__(self, classes: list[str], class_weights: str | None = None, loss: str = "ccc",
                 weights: dict | None = None):
        super().__init__()
        self.categorical = CategoricalTask(classes, class_weights)
        self.attributes = AttributesTask(classes, loss)
        weights = {"categorical": 1.0, "attributes": 1.0, **(weights or {})}
        if set(weights) != {"categorical", "attributes"} or min(weights.values()) < 0:
            raise ConfigError(f"task.weights={weights}: give categorical and attributes, each >= 0")
        self.weights = weights

    @property
    def classes(self) -> list[str]:
        return self.categorical.classes

    @property
    def output_size(self) -> int:
        return self.categorical.output_size + self.attributes.output_size

    def _parts(self, outputs, targets=None):
        c = self.categorical.output_size
        split = (outputs[:, :c], outputs[:, c:])
        return split if targets is None else (*split, targets[:, 0], targets[:, 1:])

    def target(self, class_index: int | None, attributes) -> list[float]:
        return [float(IGNORE if class_index is None else class_index), *attributes]

    def metrics(self, split: str) -> MetricCollection:
        # One collection over both tasks' metrics, which stay registered (and saved) as theirs.
        both = [*self.categorical.metrics(split).items(), *self.attributes.metrics(split).items()]
        return MetricCollection(dict(both), compute_groups=False)

    def headline_metric(self, split: str):
        return self.categorical.headline_metric(split)

    def weigh_classes(self, counts: list[int]) -> None:
        self.categorical.weigh_classes(counts)

    def learn_scale(self, scale) -> None:
        self.attributes.learn_scale(scale)

    def loss(self, outputs, targets):
        logits, values, classes, attributes = self._parts(outputs, targets)
        return (self.weights["categorical"] * self.categorical.loss(logits, classes)
                + self.weights["attributes"] * self.attributes.loss(values, attributes))

    def update(self, split, outputs, targets):
        logits, values, classes, attributes = self._parts(outputs, targets)
        self.categorical.update(split, logits, classes)
        self.attributes.update(split, values, attributes)

    def readout(self, outputs):
        logits, values = self._parts(outputs)
        return torch.cat([self.categorical.readout(logits), self.attributes.readout(values)], -1)

    def reading(self):
        return Readout(self.name, tuple(self.classes), tuple(ATTRIBUTES), self.attributes.scale)

    def start_test(self):
        self.categorical.start_test()
        self.attributes.start_test()

    def record(self, outputs, targets):
        logits, values, classes, attributes = self._parts(outputs, targets)
        self.categorical.record(logits, classes)
        self.attributes.record(values, attributes)

    def test_outputs(self):
        (logits, classes), (values, attributes) = self.categorical.test_outputs(), self.attributes.test_outputs()
        return np.concatenate([logits, values], 1), np.concatenate([classes[:, None], attributes], 1)

    def test_record(self):
        return {**self.attributes.test_record(), **self.categorical.test_record(), "task": self.name}

    def by_speaker(self, speakers, resamples, seed):
        return {**self.attributes.by_speaker(speakers, resamples, seed),
                **self.categorical.by_speaker(speakers, resamples, seed)}

    def prediction_columns(self, outputs, targets):
        c = self.categorical.output_size
        return {**self.categorical.prediction_columns(outputs[:, :c], targets[:, 0]),
                **self.attributes.prediction_columns(outputs[:, c:], targets[:, 1:])}

    def outputs_from_columns(self, rows):
        (logits, classes), (values, attributes) = (part.outputs_from_columns(rows) for part in (self.categorical, self.attributes))
        return np.concatenate([logits, values], 1), np.concatenate([classes[:, None].astype(np.float64), attributes], 1)

    def fuse(self, outputs, weights):
        c = self.categorical.output_size
        return np.concatenate([self.categorical.fuse([o[:, :c] for o in outputs], weights),
                               self.attributes.fuse([o[:, c:] for o in outputs], weights)], 1)

    def restrict_to(self, classes):
        raise ValueError("cross-corpus tests of task=both score the categories alone: not supported yet")
