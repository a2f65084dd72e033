"""Front ends: what turns a clip's waveform into what a network reads.

Each one is a ``torch.nn.Module`` inside the LightningModule (so on the model's device and in its
checkpoint) with the same protocol, :class:`Frontend`: the composition root hands it to the
data side, which takes from it the sample rate, the shortest usable clip, the *frozen stage*
(what never changes while the model trains, computed once per clip and cached) and, for per-speaker
normalisation, its :class:`~ser.frontends.normalize.SpeakerNormalizer`.

* :mod:`ser.frontends.spectral`: log-mel and MFCC (``features=logmel|mfcc``)
* :mod:`ser.frontends.functionals`: openSMILE's eGeMAPS functionals (``features=egemaps``)
* :mod:`ser.frontends.encoders`: a pretrained speech encoder (``features=encoder``)
* :mod:`ser.frontends.normalize`: per-speaker statistics, gathered and applied (no torch)
* :mod:`ser.frontends.pooled`: the training speakers' pooled statistics a front end keeps
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the package is imported by the exported model's runtime, which has no torch
    import torch

    from ser.frontends.normalize import SpeakerNormalizer, SpeakerStatistics


class Frontend(Protocol):
    sample_rate: int  # every clip is resampled to it
    min_samples: int  # the shortest clip it can analyse
    normalize: str  # "speaker" | "utterance" | "none"
    num_features: int
    injects: tuple[str, ...]  # the network arguments net_arguments() gives (checked up front)

    def net_arguments(self) -> dict: ...

    def frozen_stage(self): ...  # a ser.data.cache.FrozenStage, or None: feed waveforms

    def speaker_normalizer(self) -> SpeakerNormalizer | None: ...

    def frame_lengths(self, samples: torch.Tensor) -> torch.Tensor: ...

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, gain_db: torch.Tensor | None = None,
                statistics: SpeakerStatistics | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...
