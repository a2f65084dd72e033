"""openSMILE's eGeMAPS functionals as a front end: one frame of 88 statistics per clip."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from ser.errors import not_one_of
from ser.frontends.normalize import PooledStatistics, SpeakerNormalizer

log = logging.getLogger(__name__)
FUNCTIONAL_NORMALIZATIONS = ("speaker", "none")  # features.normalize of features=egemaps (one frame per clip)
# Shared by every front end of a process, never part of one (a module is copied and pickled).
_THREAD_SMILES = threading.local()
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


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
        import opensmile

        if normalize not in FUNCTIONAL_NORMALIZATIONS:
            raise not_one_of("features.normalize", normalize, FUNCTIONAL_NORMALIZATIONS)
        self.sample_rate, self.feature_set, self.normalize = sample_rate, feature_set, normalize
        if not (threads == "auto" or (isinstance(threads, int) and threads >= 1)):
            raise not_one_of("features.threads", threads, ["auto", "a count >= 1"])
        self.threads = len(os.sched_getaffinity(0)) if threads == "auto" else threads
        try:
            chosen = opensmile.FeatureSet[feature_set]
        except KeyError:
            raise not_one_of("features.feature_set", feature_set, [f.name for f in opensmile.FeatureSet]) from None
        self.smile = opensmile.Smile(feature_set=chosen, feature_level=opensmile.FeatureLevel.Functionals)
        self.num_features = len(self.smile.feature_names)
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
        rows = np.stack(list(self._pool().map(self._one, clips)) if self.threads > 1 and len(clips) > 1
                        else [self._one(clip) for clip in clips])
        broken = ~np.isfinite(rows).all(1)
        if broken.any():  # openSMILE fills what it cannot measure with NaN: never hand that on
            log.warning("openSMILE could not measure %d of %d clips (too short?): their missing "
                        "functionals are set to 0", int(broken.sum()), len(rows))
            rows = np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.from_numpy(rows).float().to(waves.device)[..., None]

    def _one(self, clip: np.ndarray) -> np.ndarray:
        """One clip's functionals, with this thread's own openSMILE instance (openSMILE runs in C
        without Python's lock, so threads use every core; an instance is not shared between them)."""
        smile = getattr(_THREAD_SMILES, self.feature_set, None)
        if smile is None:
            import opensmile

            smile = opensmile.Smile(feature_set=opensmile.FeatureSet[self.feature_set],
                                    feature_level=opensmile.FeatureLevel.Functionals)
            setattr(_THREAD_SMILES, self.feature_set, smile)
        return smile.process_signal(clip, self.sample_rate).to_numpy()[0]

    def _pool(self) -> ThreadPoolExecutor:
        with _POOL_LOCK:
            pool = _POOLS.get(self.threads)
            if pool is None:
                pool = _POOLS[self.threads] = ThreadPoolExecutor(self.threads, thread_name_prefix="opensmile")
            return pool

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, gain_db: torch.Tensor | None = None):
        """Waveforms ``[B, T]``, or the cached functionals ``[B, num_features, 1]`` (with
        normalize=speaker: already standardised by the clip's speaker). Waveforms of a model
        normalising per speaker are standardised by the pooled training statistics."""
        if inputs.dim() == 3:
            return inputs, lengths
        rows = self.functionals(inputs, lengths)
        if self.normalize == "speaker":
            rows = self.speaker_normalizer().apply(rows.transpose(1, 2), self.pooled.statistics()).transpose(1, 2)
        return rows, self.frame_lengths(lengths)


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
