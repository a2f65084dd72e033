"""What a prediction says of a clip: the one format ``ser-predict`` prints, whichever model
computed it (a checkpoint on torch, or an exported model on onnxruntime). numpy only.

A model's *readout* of a clip (or window) is one row of values: the classes' probabilities, then
the attribute values on [0, 1] (``task=both`` has both, in that order); a file's readout is its
windows' readouts averaged by duration. :class:`Readout` names the values; ``ser.tasks`` builds
it for a checkpoint, and ``ser.json`` carries it beside an exported model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Readout:
    task: str  # categorical | attributes | both
    classes: tuple[str, ...] = ()  # the probabilities' order
    attributes: tuple[str, ...] = ()  # the attribute values' order, after the probabilities
    scale: tuple[float, float] | None = None  # the training corpus's attribute rating scale, where known

    def describe(self, values: np.ndarray) -> dict:
        """One clip's (or window's) readout as ser-predict prints it."""
        values = np.asarray(values, dtype=np.float64)
        out = {}
        if self.classes:
            probs = values[: len(self.classes)]
            out |= {"emotion": self.classes[int(probs.argmax())],
                    "probs": {c: round(float(v), 6) for c, v in zip(self.classes, probs)}}
        if self.attributes:
            unit = {name: round(float(v), 4) for name, v in zip(self.attributes, values[len(self.classes):])}
            out["attributes"] = unit
            if self.scale:
                low, high = self.scale
                out |= {"attributes_on_scale": {name: round(low + v * (high - low), 3) for name, v in unit.items()},
                        "scale": [low, high]}
        return out

    def to_json(self) -> dict:
        return {**asdict(self), "classes": list(self.classes), "attributes": list(self.attributes),
                "scale": list(self.scale) if self.scale else None}

    @classmethod
    def from_json(cls, record: dict) -> Readout:
        scale = record.get("scale")
        return cls(record["task"], tuple(record.get("classes", ())), tuple(record.get("attributes", ())),
                   tuple(scale) if scale else None)
