"""Per-speaker standardisation: the one place that says how a speaker's statistics are
gathered and applied.

A front end that normalises per speaker (``features.normalize=speaker``) hands a
:class:`SpeakerNormalizer` to whoever meets a speaker's clips: the data side's cache (every
speaker of a corpus), ser-predict (the files of one call, or enrolment clips) and an exported
model. Each value of a frame (a mel bin, a functional) goes to zero mean and unit variance over
every frame of that speaker's clips. The exported model's runtime, which has no torch, gathers statistics with this module too
(torch is imported only where a tensor is standardised). Statistics travel as *moments* (count, sum, sum of
squares per value, float64), which add up over clips and speakers: a speaker's statistics are
the sum over their clips, the pooled training statistics (the fallback for a speaker whose other
clips are not at hand) the sum over the training speakers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Bump when what the statistics or their application mean changes: caches built with an older
# rule are keyed apart (``ser.data.cache.SpeakerNormalised``).
RULE_VERSION = 1
STD_FLOOR = 1e-5  # keeps a value a speaker never varies at 0 instead of NaN


def moments(rows: np.ndarray) -> np.ndarray:
    """``[3, width]``: count, sum and sum of squares of each value over ``rows[frames, width]``."""
    rows = np.asarray(rows, dtype=np.float64)
    return np.stack([np.full(rows.shape[1:], len(rows)), rows.sum(0), np.square(rows).sum(0)])


@dataclass(frozen=True)
class SpeakerStatistics:
    """The mean and (population) std of each value over a speaker's frames."""

    mean: np.ndarray  # [width] (float64; a tensor where a front end's buffers hold it)
    std: np.ndarray  # [width], never below STD_FLOOR

    @classmethod
    def from_moments(cls, total: np.ndarray) -> SpeakerStatistics:
        count, values, squares = np.asarray(total, dtype=np.float64)
        if not (count > 0).all():
            raise ValueError("speaker statistics need at least one frame")
        mean = values / count
        return cls(mean, np.sqrt(np.maximum(squares / count - mean ** 2, 0)) + STD_FLOOR)

    @classmethod
    def of(cls, clips: Iterable[np.ndarray]) -> SpeakerStatistics:
        """The statistics of the clips ``rows[frames, width]`` of one speaker."""
        return cls.from_moments(sum(moments(rows) for rows in clips))


class SpeakerNormalizer:
    """How a front end's frozen-stage output is standardised per speaker."""

    version = RULE_VERSION

    @staticmethod
    def moments(rows: np.ndarray) -> np.ndarray:
        return moments(rows)

    @staticmethod
    def statistics(total: np.ndarray) -> SpeakerStatistics:
        return SpeakerStatistics.from_moments(total)

    @staticmethod
    def apply(rows, statistics: SpeakerStatistics):
        """``rows[..., width]`` (numpy, or a torch tensor) standardised by ``statistics``,
        in float32 as the caches hold them."""
        if isinstance(rows, np.ndarray):
            # (a front end's pooled statistics are tensors: brought to the CPU as numpy)
            mean, std = (np.asarray(v.cpu() if hasattr(v, "cpu") else v) for v in (statistics.mean, statistics.std))
            return ((rows - mean) / std).astype(np.float32)
        import torch

        mean = torch.as_tensor(statistics.mean, dtype=torch.float64, device=rows.device)
        std = torch.as_tensor(statistics.std, dtype=torch.float64, device=rows.device)
        return ((rows.double() - mean) / std).float()
