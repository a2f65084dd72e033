"""The batched front end (waveforms -> log-mel / MFCC) and train-only augmentation.

Both run inside the LightningModule, so they run on the model's device, batched, and are
saved with the checkpoint. Frames are computed without centre padding so that a frame never
reads past the end of its clip: the features of a clip are the same alone or zero-padded
inside a batch, and ``frame_lengths`` says how many frames of each row are real.

The composition root hands the model's front end to the DataModule, which takes from it the
sample rate, the shortest usable clip and the *frozen stage*: the part whose output per clip
never changes while the model trains (here the log-mel; a frozen encoder's states could be
another). The data side computes that once per clip, with this very module, and hands its
output over instead of the waveform: the rest (MFCC, normalisation, gain, SpecAugment) runs
per batch either way.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torchaudio.functional as F
import torchaudio.transforms as T
from torch import nn

from ser.errors import not_one_of
from ser.ops import frames_after, masked_moments, real_frames

log = logging.getLogger(__name__)
LOG_FLOOR = 1e-6  # added to the mel power before the log: silence stays finite
KINDS = ("logmel", "mfcc", "waveform")  # features.kind
NORMALIZATIONS = ("speaker", "utterance", "none")  # features.normalize
FUNCTIONAL_NORMALIZATIONS = ("speaker", "none")  # features.normalize of features=egemaps (one frame per clip)


class FeatureFrontend(nn.Module):
    def __init__(self, kind: str = "logmel", sample_rate: int = 16000, n_fft: int = 2048,
                 hop_length: int = 512, n_mels: int = 128, n_mfcc: int = 40,
                 f_min: float = 0.0, f_max: float | None = None, normalize: str = "utterance"):
        super().__init__()
        if kind not in KINDS:
            raise not_one_of("features.kind", kind, KINDS)
        if normalize not in NORMALIZATIONS:
            raise not_one_of("features.normalize", normalize, NORMALIZATIONS)
        self.kind, self.n_fft, self.hop_length, self.normalize = kind, n_fft, hop_length, normalize
        self.n_mels, self.sample_rate = n_mels, sample_rate
        if kind == "waveform":  # raw samples for encoders with their own front end (wav2vec 2.0...)
            self.num_features = 1
            return
        # torchaudio's MelSpectrogram/MFCC, taken apart: its power spectrum is |X|.pow(2), whose
        # complex magnitude costs a square root per bin; re^2 + im^2 gives the same power for
        # half the front end's time (measured: 12.7 -> 6.5 ms for 32 clips of 2 s on 2 cores).
        self.spectrogram = T.Spectrogram(n_fft=n_fft, hop_length=hop_length, center=False, power=None)
        self.mel_scale = T.MelScale(n_mels, sample_rate, f_min, f_max, n_stft=n_fft // 2 + 1)
        if kind == "mfcc":
            self.register_buffer("dct", F.create_dct(n_mfcc, n_mels, norm="ortho"))
        self.num_features = n_mels if kind == "logmel" else n_mfcc

    def net_arguments(self) -> dict:
        """What the network is sized from: the values per frame."""
        return {"in_features": self.num_features}

    @property
    def min_samples(self) -> int:
        """The shortest clip this front end can analyse: one STFT window (or one sample)."""
        return 1 if self.kind == "waveform" else self.n_fft

    def frozen_stage(self) -> LogMelStage | None:
        """What the data side may compute once per clip and cache: the log-mel of the
        spectral kinds; nothing for raw waveforms."""
        return LogMelStage(self) if self.kind in ("logmel", "mfcc") else None

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.kind == "waveform":
            return lengths
        return frames_after(lengths, self.n_fft, self.hop_length)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, gain_db: torch.Tensor | None = None):
        """Features and their frame counts: ``features[B, F, frames], frame_lengths[B]``.

        ``inputs`` are waveforms ``[B, T]`` with sample counts, or (spectral kinds) the log-mel
        ``[B, n_mels, frames]`` with frame counts, as the DataModule's feature cache delivers it.
        ``gain_db[B]`` (training augmentation) scales each clip's level.
        """
        with torch.autocast(inputs.device.type, enabled=False):  # STFT and log need float32
            inputs = inputs.float()
            if self.kind == "waveform":
                return self._waveform(inputs, lengths, gain_db)
            cached = inputs.dim() == 3
            mel, frames = (inputs, lengths) if cached else self.log_mel(inputs, lengths)
            by_speaker = cached and self.normalize == "speaker"
            if gain_db is not None and not by_speaker:  # normalised: a dB has no known size there
                # A gain of g on the waveform adds log(g^2) to its log power, exactly wherever the
                # mel energy is above the log floor: applied here, it needs no waveform.
                mel = mel + gain_db[:, None, None] * (math.log(10) / 10)
            return self._finish(mel, frames, by_speaker)

    def log_mel(self, waves: torch.Tensor, lengths: torch.Tensor):
        """waves[B, T], lengths[B] -> log-mel[B, n_mels, frames] (unnormalised), frame_lengths[B]"""
        if waves.shape[-1] < self.n_fft:  # keep one (partly padded) frame for tiny inputs
            waves = nn.functional.pad(waves, (0, self.n_fft - waves.shape[-1]))
        spectrum = self.spectrogram(waves)
        power = spectrum.real.square() + spectrum.imag.square()
        return torch.log(self.mel_scale(power) + LOG_FLOOR), self.frame_lengths(lengths)

    def _waveform(self, waves, lengths, gain_db):
        if gain_db is not None:
            waves = waves * 10 ** (gain_db[:, None] / 20)
        return waves.unsqueeze(1) * real_frames(lengths, waves.shape[-1]).unsqueeze(1).to(waves.dtype), lengths

    def _finish(self, feats: torch.Tensor, frames: torch.Tensor, by_speaker: bool = False):
        """``by_speaker``: the data side has normalised these log-mel per speaker already."""
        mask = real_frames(frames, feats.shape[-1]).unsqueeze(1).to(feats.dtype)  # [B, 1, frames]
        if self.normalize == "speaker" and not by_speaker:
            # A clip whose speaker's other clips are not at hand (ser-predict, features computed
            # per step): the clip stands for its speaker, each bin over its own frames.
            mean, var = masked_moments(feats, mask, dims=(2,))
            feats = (feats - mean) / (var.sqrt() + 1e-5)
        if self.kind == "mfcc":  # the log-mel floor is torchaudio's MFCC(log_mels=True)
            feats = torch.matmul(feats.transpose(-1, -2), self.dct).transpose(-1, -2)
        if self.normalize == "utterance":
            # One mean and std per clip over its real frames: removes recording gain, keeps
            # the spectral shape and its dynamics, which carry emotion.
            mean, var = masked_moments(feats, mask, dims=(1, 2))
            feats = (feats - mean) / (var.sqrt() + 1e-5)
        return feats * mask, frames


class LogMelStage:
    """The frozen stage of a spectral front end, as the data side's caches use one (see
    ``ser.data.cache.FrozenStage``): computed with the front end's own modules, on its device,
    so cached features cannot drift from what the model computes itself."""

    description = "log-mel features"
    batch_size = 64

    def __init__(self, frontend: FeatureFrontend):
        self.frontend = frontend
        self.width = frontend.n_mels

    @property
    def device(self) -> torch.device:
        return next(self.frontend.buffers()).device

    def to(self, device: torch.device) -> LogMelStage:
        self.frontend.to(device)
        return self

    def estimated_bytes(self, samples: int, clips: int) -> int:
        return 4 * self.width * int(self.frame_lengths(torch.tensor(samples)))

    def cache_key(self) -> dict:
        """What the log-mel depends on: the key of a cache of it."""
        f, mel = self.frontend, self.frontend.mel_scale
        return dict(sample_rate=mel.sample_rate, n_fft=f.n_fft, hop_length=f.hop_length,
                    n_mels=f.n_mels, f_min=mel.f_min, f_max=mel.f_max, floor=LOG_FLOOR)

    def frame_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        return self.frontend.frame_lengths(samples)

    def compute(self, waves: torch.Tensor, lengths: torch.Tensor):
        """waves[B, T], lengths[B] -> log-mel[B, n_mels, frames], frame_lengths[B]"""
        return self.frontend.log_mel(waves, lengths)


class EgemapsFrontend(nn.Module):
    """openSMILE's eGeMAPS functionals (88 per clip: the field's reference set of prosodic,
    spectral and voice-quality statistics), for the classic baseline beside the deep models.

    The functionals of a clip never change, so the data side computes them once per clip
    (:class:`EgemapsStage`) and caches them like the log-mel; the head reads one 88-value frame.
    """

    min_samples = 1600  # 0.1 s: openSMILE's pitch and formant trackers need a few frames

    def __init__(self, sample_rate: int = 16000, feature_set: str = "eGeMAPSv02", normalize: str = "none"):
        """``normalize="speaker"``: the data side standardises each functional over each
        speaker's clips (the SER standard for functionals); "none": the head standardises them
        over the training split only."""
        super().__init__()
        import opensmile

        if normalize not in FUNCTIONAL_NORMALIZATIONS:
            raise not_one_of("features.normalize", normalize, FUNCTIONAL_NORMALIZATIONS)
        self.sample_rate, self.feature_set, self.normalize = sample_rate, feature_set, normalize
        try:
            chosen = opensmile.FeatureSet[feature_set]
        except KeyError:
            raise not_one_of("features.feature_set", feature_set, [f.name for f in opensmile.FeatureSet]) from None
        self.smile = opensmile.Smile(feature_set=chosen, feature_level=opensmile.FeatureLevel.Functionals)
        self.num_features = len(self.smile.feature_names)

    def net_arguments(self) -> dict:
        return {"in_features": self.num_features}

    def frozen_stage(self) -> EgemapsStage:
        return EgemapsStage(self)

    def frame_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(samples)

    def functionals(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """waves[B, T], lengths[B] -> functionals[B, num_features, 1] (computed on the CPU)."""
        rows = np.stack([self.smile.process_signal(wave[:n].float().cpu().numpy(), self.sample_rate).to_numpy()[0]
                         for wave, n in zip(waves, lengths.tolist())])
        broken = ~np.isfinite(rows).all(1)
        if broken.any():  # openSMILE fills what it cannot measure with NaN: never hand that on
            log.warning("openSMILE could not measure %d of %d clips (too short?): their missing "
                        "functionals are set to 0", int(broken.sum()), len(rows))
            rows = np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.from_numpy(rows).float().to(waves.device)[..., None]

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, gain_db: torch.Tensor | None = None):
        """Waveforms ``[B, T]``, or the cached functionals ``[B, num_features, 1]``."""
        if inputs.dim() == 3:
            return inputs, lengths
        return self.functionals(inputs, lengths), self.frame_lengths(lengths)


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
        return self.frontend(waves, lengths)


def read_at(feats: torch.Tensor, source: torch.Tensor, last, dim: int) -> torch.Tensor:
    """feats[B, F, T] read at fractional positions ``source[B, N]`` along ``dim`` (1: bins,
    2: frames), by linear interpolation between the two nearest; positions past ``last`` (a
    number, or one per clip [B, 1]) read ``last``. Returns [B, N, T] or [B, F, N]."""
    source = torch.minimum(source, torch.as_tensor(last, dtype=source.dtype, device=source.device))
    low = source.floor().long()
    high = torch.minimum(low + 1, torch.as_tensor(last, device=low.device).long())
    weight = (source - low).to(feats.dtype)
    if dim == 1:
        size = (-1, -1, feats.shape[2])
        pick = lambda index: feats.gather(1, index[:, :, None].expand(*size))  # noqa: E731
        weight = weight[:, :, None]
    else:
        size = (-1, feats.shape[1], -1)
        pick = lambda index: feats.gather(2, index[:, None, :].expand(*size))  # noqa: E731
        weight = weight[:, None, :]
    return pick(low) * (1 - weight) + pick(high) * weight


class Augment(nn.Module):
    """Training-only augmentation on the batch: a random gain per clip (applied by the front
    end, on the waveform or as a shift of the log-mel) and SpecAugment.

    SpecAugment sets ``num_masks`` frequency bands and ``num_masks`` time spans of each clip
    to zero (the mean of normalised features), each applied with probability ``p``; a band is
    up to ``freq_mask`` bins wide, a span up to ``time_mask`` frames and always inside the
    clip's real frames (a short clip in a long batch is masked as often as a long one). All
    masks of a batch come from one random draw and one broadcast comparison: a few kernels
    per step instead of a few per mask, which matters when the GPU waits on the host.
    """

    def __init__(self, gain_db: float = 6.0, freq_mask: int = 15, time_mask: int = 35,
                 num_masks: int = 1, p: float = 0.5, freq_warp: float = 0.0, mixup: float = 0.0,
                 speed: float = 0.0):
        super().__init__()
        self.gain_db, self.freq_mask, self.time_mask = gain_db, freq_mask, time_mask
        self.num_masks, self.p, self.freq_warp, self.mixup = num_masks, p, freq_warp, mixup
        self.speed = speed

    def random_gain(self, batch: int, device: torch.device) -> torch.Tensor | None:
        """A gain in dB per clip, uniform in [-gain_db, gain_db] (None when switched off)."""
        if self.gain_db <= 0:
            return None
        return (torch.rand(batch, device=device) * 2 - 1) * self.gain_db

    def features(self, feats: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats[B, F, T] with frame counts -> perturbed, warped and masked feats (padding zero
        as well) and their frame counts (speed perturbation changes them)."""
        if self.speed > 0:
            feats, frames = self.sped(feats, frames)
        if self.freq_warp > 0:
            feats = self.warped(feats)
        keep = real_frames(frames, feats.shape[-1])[:, None, :]  # [B, 1, T]
        if self.time_mask > 0 and self.num_masks > 0:
            keep = keep & ~self._spans(frames, self.time_mask, feats.shape[-1])[:, None, :]
        if self.freq_mask > 0 and self.num_masks > 0:
            bins = torch.full_like(frames, feats.shape[1])
            keep = keep & ~self._spans(bins, self.freq_mask, feats.shape[1])[:, :, None]
        return feats * keep, frames

    def _factors(self, feats: torch.Tensor, spread: float) -> torch.Tensor:
        """One factor per clip, uniform in ``1 +- spread``: [B, 1]."""
        return 1 + (torch.rand(len(feats), 1, device=feats.device) * 2 - 1) * spread

    def warped(self, feats: torch.Tensor) -> torch.Tensor:
        """Each clip's frequency axis stretched by a factor uniform in ``1 +- freq_warp``: a
        longer or shorter vocal tract (VTLP), done on the cached features. Bin ``b`` reads bin
        ``b * factor``."""
        bins = torch.arange(feats.shape[1], device=feats.device)
        return read_at(feats, bins * self._factors(feats, self.freq_warp), feats.shape[1] - 1, dim=1)

    def sped(self, feats: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Speed perturbation (Kaldi's 0.9/1.0/1.1, here a speed uniform in ``1 +- speed`` per
        clip), done on the cached features: what resampling the waveform does to a log-mel.
        The clip lasts ``1 / speed`` as long (frame ``t`` reads frame ``t * speed``) and every
        frequency rises by ``speed`` (bin ``b`` reads bin ``b / speed``; on the mel scale an
        approximation, as VTLP's). A rate and a register the speaker never had, one draw."""
        speed = self._factors(feats, self.speed)
        bins = torch.arange(feats.shape[1], device=feats.device)
        feats = read_at(feats, bins / speed, feats.shape[1] - 1, dim=1)
        new_frames = ((frames - 1) / speed[:, 0]).floor().long() + 1
        times = torch.arange(int(new_frames.max()), device=feats.device) * speed  # [B, T']
        feats = read_at(feats, times, (frames - 1)[:, None], dim=2)
        return feats * real_frames(new_frames, feats.shape[-1])[:, None, :], new_frames

    def mixed(self, feats: torch.Tensor, frames: torch.Tensor):
        """Mixup: each clip blended with another clip of the batch, ``share ~ Beta(mixup,
        mixup)`` of it kept (one draw per batch). Returns the blend, its frame counts (the
        longer of the two), the partner of each clip and the share, for the loss."""
        share = float(torch.distributions.Beta(self.mixup, self.mixup).sample())
        partner = torch.randperm(len(feats), device=feats.device)
        return share * feats + (1 - share) * feats[partner], torch.maximum(frames, frames[partner]), partner, share

    def _spans(self, extent: torch.Tensor, max_width: int, size: int) -> torch.Tensor:
        """[B, size] bool, true on ``num_masks`` random spans per row inside ``[0, extent)``:
        width uniform in 0..max_width (at most the extent), start uniform where it fits."""
        width_u, start_u, apply_u = torch.rand(3, len(extent), self.num_masks, 1, device=extent.device)
        extent = extent.to(width_u.dtype)[:, None, None]
        width = torch.minimum((width_u * (max_width + 1)).floor(), extent) * (apply_u < self.p)
        start = (start_u * (extent - width + 1)).floor()
        position = torch.arange(size, device=extent.device)
        return ((position >= start) & (position < start + width)).any(dim=1)
