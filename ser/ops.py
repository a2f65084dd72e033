"""Length-aware tensor math, shared by the front end, the models and the loaders.

A batch is padded along time; ``lengths[B]`` says how many frames (or samples) of each row are
real. Everything that must not see the padding (normalisation, pooling, attention, the next
layer's lengths) goes through these few functions, so "which frames are real" is answered
once.
"""

from __future__ import annotations

import torch


def real_frames(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B]`` lengths -> ``[B, size]`` bool, true on each row's real frames."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def frame_mask(lengths: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bool, true on each row's real frames of a map ``x[B, C, ..., T]``, alike for every channel:
    ``[B, 1, ..., 1, T]``, which torch broadcasts cheapest, and in an export ``[B, 1, ..., T]``,
    spelt out along every axis but the channels: onnxruntime runs a Mul or Where by that 2-6x
    faster, as it walks the narrow broadcast a few frames at a time (benchmarks/README.md,
    "export"), while in torch the wide one made a training step of the CNN 4-5% slower."""
    mask = real_frames(lengths, x.shape[-1]).view(x.shape[0], *[1] * (x.dim() - 2), x.shape[-1])
    return mask.expand(x.shape[0], 1, *x.shape[2:]) if torch.compiler.is_exporting() else mask


def padding(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, size]`` bool, true on padded positions (``nn.MultiheadAttention``'s key padding mask)."""
    return ~real_frames(lengths, size)


def frames_after(lengths: torch.Tensor, kernel: int, stride: int, padding: int = 0) -> torch.Tensor:
    """Frames a sliding window (a convolution, pooling or STFT frame of ``kernel`` with
    ``stride``, ``padding`` on each side) leaves of each row: ``floor((n + 2p - k) / s) + 1``,
    at least one, so a very short clip keeps one (partly padded) frame."""
    return (torch.div(lengths + 2 * padding - kernel, stride, rounding_mode="floor") + 1).clamp(min=1)


def masked_moments(x: torch.Tensor, mask: torch.Tensor, dims: tuple[int, ...]):
    """Mean and (biased) variance of ``x`` over ``dims``, counting only where ``mask`` (which
    broadcasts against ``x``) is true; keeps the reduced dims."""
    mask = mask.to(x.dtype)
    count = (mask.expand_as(x).sum(dims, keepdim=True)).clamp(min=1)
    mean = (x * mask).sum(dims, keepdim=True) / count
    var = (((x - mean) * mask) ** 2).sum(dims, keepdim=True) / count
    return mean, var


def masked_standardize(x: torch.Tensor, mask: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    """``x`` less its mean, over ``sqrt(var + eps)``, both taken over ``dims`` where ``mask`` is
    true (as :func:`masked_moments`); zero where it is not."""
    mean, var = masked_moments(x, mask, dims)
    return (x - mean) / torch.sqrt(var + eps) * mask


def masked_group_norm(x: torch.Tensor, mask: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
    """``norm`` (one group per channel) of ``x[B, C, T]`` over the real frames of ``mask[B, 1, T]``
    alone, padding zero: what the norm gives a clip alone. In float32, as autocast runs a
    GroupNorm, then back to ``x``'s dtype."""
    normed = masked_standardize(x.float(), mask, (-1,), norm.eps)
    return ((normed * norm.weight[:, None] + norm.bias[:, None]) * mask).type_as(x)  # the bias off the padding


def masked_mean(x: torch.Tensor, lengths: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Mean of ``x`` over its real frames along ``dim`` (the time axis), which is removed."""
    shape = [1] * x.dim()
    shape[0], shape[dim] = x.shape[0], x.shape[dim]
    mask = real_frames(lengths, x.shape[dim]).view(shape).to(x.dtype)
    return (x * mask).sum(dim) / lengths.clamp(min=1).view(-1, *[1] * (x.dim() - 2)).to(x.dtype)


def masked_max(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Max of ``x[B, C, ..., T]`` over its real frames (last axis) and every axis after the
    channel axis: ``[B, C, F, T] -> [B, C]``."""
    return x.masked_fill(~frame_mask(lengths, x), float("-inf")).flatten(2).max(dim=-1).values
