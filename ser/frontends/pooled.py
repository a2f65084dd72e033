"""The training speakers' pooled statistics, kept in a per-speaker front end and its checkpoint."""

from __future__ import annotations

import torch
from torch import nn

from ser.frontends.normalize import SpeakerStatistics


class PooledStatistics(nn.Module):
    """The pooled statistics of the training speakers, kept in the front end (and so in its
    checkpoint): what a clip whose speaker's other clips are not at hand is standardised by
    (ser-predict on a lone file, a waveform through the model's forward). Identity until the
    composition root hands the training split's statistics over (:meth:`remember`)."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width, dtype=torch.float64))
        self.register_buffer("std", torch.ones(width, dtype=torch.float64))
        self.register_buffer("frames", torch.zeros((), dtype=torch.float64))  # 0: never handed over

    def remember(self, statistics: SpeakerStatistics, frames: float) -> None:
        self.mean.copy_(torch.as_tensor(statistics.mean))
        self.std.copy_(torch.as_tensor(statistics.std))
        self.frames.fill_(frames)

    @property
    def known(self) -> bool:
        return bool(self.frames > 0)

    def statistics(self) -> SpeakerStatistics:
        return SpeakerStatistics(self.mean, self.std)  # the buffers themselves: no copy, no sync
