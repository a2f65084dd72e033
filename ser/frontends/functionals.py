"""openSMILE's eGeMAPS functionals as a front end: one frame of 88 statistics per clip."""

from __future__ import annotations

import torch
from torch import nn

from ser.errors import not_one_of
from ser.frontends.normalize import SpeakerNormalizer, SpeakerStatistics
from ser.frontends.pooled import PooledStatistics
from ser.frontends.smile import Functionals

FUNCTIONAL_NORMALIZATIONS = ("speaker", "none")  # features.normalize of features=egemaps (one frame per clip)


class EgemapsFrontend(nn.Module):
    """openSMILE's eGeMAPS functionals (88 per clip: the field's reference set of prosodic,
    spectral and voice-quality statistics), for the classic baseline beside the deep models.

    The functionals of a clip never change, so the data side computes them once per clip
    (:class:`EgemapsStage`) and caches them like the log-mel; the head reads one 88-value frame.
    """

    min_samples = 1600  # 0.1 s: openSMILE's pitch and formant trackers need a few frames
    injects = ("in_features",)

    def __init__(self, sample_rate: int = 16000, feature_set: str = "eGeMAPSv02", normalize: str = "none",
                 threads: int | str = "auto"):
        """``normalize="speaker"``: the data side standardises each functional over each
        speaker's clips (the SER standard for functionals); "none": the head standardises them
        over the training split only. ``threads``: clips analysed at once (auto: one per core)."""
        super().__init__()
        if normalize not in FUNCTIONAL_NORMALIZATIONS:
            raise not_one_of("features.normalize", normalize, FUNCTIONAL_NORMALIZATIONS)
        self.sample_rate, self.feature_set, self.normalize = sample_rate, feature_set, normalize
        self.smile = Functionals(feature_set, sample_rate, threads)
        self.threads, self.num_features = self.smile.threads, len(self.smile.names)
        self.pooled = PooledStatistics(self.num_features)  # normalize=speaker: a speaker with no other clips at hand

    def net_arguments(self) -> dict:
        return {"in_features": self.num_features}

    def frozen_stage(self) -> EgemapsStage:
        return EgemapsStage(self)

    def speaker_normalizer(self) -> SpeakerNormalizer | None:
        """How the functionals of a speaker's clips are standardised (normalize=speaker), else None."""
        return SpeakerNormalizer() if self.normalize == "speaker" else None

    def frame_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(samples)

    def functionals(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waves[B, T], lengths[B] -> functionals[B, num_features, 1] (computed on the CPU)."""
        clips = [wave[:n].float().cpu().numpy() for wave, n in zip(waves, lengths.tolist())]
        return torch.from_numpy(self.smile.of(clips)).to(waves.device)[..., None]

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, gain_db: torch.Tensor | None = None,
                statistics: SpeakerStatistics | None = None):
        """Waveforms ``[B, T]``, or the cached functionals ``[B, num_features, 1]`` (with
        normalize=speaker: already standardised by the clip's speaker). A model normalising per
        speaker standardises a waveform's functionals, or functionals handed over with
        ``statistics``, by ``statistics`` (the clips' speaker's), else by the pooled training
        statistics."""
        cached = inputs.dim() == 3
        if cached and (self.normalize != "speaker" or statistics is None):
            return inputs, lengths
        rows, frames = (inputs, lengths) if cached else (self.functionals(inputs, lengths), self.frame_lengths(lengths))
        if self.normalize == "speaker":
            statistics = statistics if statistics is not None else self.pooled.statistics()
            rows = self.speaker_normalizer().apply(rows.transpose(1, 2), statistics).transpose(1, 2)
        return rows, frames


class EgemapsStage:
    """The eGeMAPS functionals as the data side's frozen stage (``ser.data.cache.FrozenStage``)."""

    batch_size = 64
    device = torch.device("cpu")  # openSMILE runs on the CPU

    def __init__(self, frontend: EgemapsFrontend):
        self.frontend = frontend
        self.width = frontend.num_features
        self.description = f"openSMILE {frontend.feature_set} functionals"

    def to(self, device: torch.device) -> EgemapsStage:
        return self

    def cache_key(self) -> dict:
        import opensmile

        return dict(opensmile=opensmile.__version__, feature_set=self.frontend.feature_set,
                    sample_rate=self.frontend.sample_rate)

    def frame_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        return self.frontend.frame_lengths(samples)

    def estimated_bytes(self, samples: int, clips: int) -> int:
        return 4 * self.width * clips

    def compute(self, waves: torch.Tensor, lengths: torch.Tensor):
        """waves[B, T], lengths[B] -> functionals[B, width, 1] (unnormalised), frames[B]"""
        return self.frontend.functionals(waves, lengths), self.frame_lengths(lengths)
