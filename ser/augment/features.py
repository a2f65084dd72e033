"""Training-only augmentation on a batch of features: gain, SpecAugment, VTLP, speed, mixup (and,
before the front end, the channel: :mod:`ser.augment.channel`)."""

from __future__ import annotations

import torch
from torch import nn

from ser.augment.channel import ChannelAugment
from ser.ops import real_frames


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
    up to ``freq_mask`` bins wide, a span up to ``time_mask`` frames, always inside the
    clip's real frames and never all of them (a short clip in a long batch is masked as often as
    a long one). All masks of a batch come from one random draw and one broadcast comparison: a
    few kernels per step instead of a few per mask, which matters when the GPU waits on the host.
    """

    def __init__(self, gain_db: float = 6.0, freq_mask: int = 15, time_mask: int = 35,
                 num_masks: int = 1, p: float = 0.5, freq_warp: float = 0.0, mixup: float = 0.0,
                 speed: float = 0.0, channel: dict | None = None):
        """``channel``: the options of :class:`ChannelAugment` (None: the waveform is left as recorded)."""
        super().__init__()
        self.gain_db, self.freq_mask, self.time_mask = gain_db, freq_mask, time_mask
        self.num_masks, self.p, self.freq_warp, self.mixup = num_masks, p, freq_warp, mixup
        self.speed = speed
        self.channel = ChannelAugment(**channel) if channel is not None else None

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
        width uniform in 0..max_width (short of the extent), start uniform where it fits.

        The spans never cover a row's whole extent (each is at most ``(extent - 1) / num_masks``
        wide): a clip with every frame masked is a training example of nothing but zeros under an
        emotion's label, and a model reading one frame per clip (eGeMAPS functionals) would lose
        a quarter of its clips to the time mask."""
        width_u, start_u, apply_u = torch.rand(3, len(extent), self.num_masks, 1, device=extent.device)
        extent = extent.to(width_u.dtype)[:, None, None]
        widest = ((extent - 1) / self.num_masks).floor().clamp(min=0)  # all spans together leave a row
        width = torch.minimum((width_u * (max_width + 1)).floor(), widest) * (apply_u < self.p)
        start = (start_u * (extent - width + 1)).floor()
        position = torch.arange(size, device=extent.device)
        return ((position >= start) & (position < start + width)).any(dim=1)
