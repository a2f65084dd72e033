"""Building blocks shared by the architectures, all aware of each clip's true length.

Every network maps ``features[B, F, T], lengths[B] -> logits[B, C]``. Padded frames must not
change a clip's prediction, so convolution stacks re-zero the padding after every block,
recurrent layers are packed, attention gets key padding masks and pooling only averages
real frames (the length-aware math itself is ``ser/ops.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ser.errors import ConfigError, not_one_of
from ser.ops import frame_mask, frames_after


class ConvStack(nn.Module):
    """Seed 004's CNN front end: four blocks of conv3x3 -> ReLU -> max-pool 2 -> norm, with a
    1x1 strided residual shortcut from the input added after the second convolution.

    Input [B, 1, F, T] -> output [B, C_last, F/16, T/16]. ``norm="batch"`` is the seed's
    BatchNorm; ``norm="layer"`` normalises each frame over channels and frequency (the seed's
    CNN-Transformer used a LayerNorm built inside ``forward`` over the whole map, which both
    re-initialised every call and mixed in the padding).
    """

    def __init__(self, in_freq: int, channels=(32, 64, 128, 256), norm: str = "batch",
                 residual: bool = True):
        super().__init__()
        if len(channels) < 2:
            raise ConfigError(f"model.net.channels={list(channels)}: the CNN front end needs at least two conv blocks.")
        if norm not in ("batch", "layer"):
            raise not_one_of("model.net.norm", norm, ("batch", "layer"))
        ins = (1, *channels[:-1])
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in zip(ins, channels))
        freqs = [in_freq // 2 ** (k + 1) for k in range(len(channels))]
        if freqs[-1] < 1:
            raise ConfigError(f"{in_freq} frequency bins (features.n_mels) are too few for "
                              f"{len(channels)} pooling blocks (model.net.channels): use at least {2 ** len(channels)}.")
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(c) if norm == "batch" else FrameLayerNorm(c, f)
            for c, f in zip(channels, freqs))
        self.shortcut = nn.Conv2d(1, channels[1], 1, stride=2) if residual else None
        self.pool = nn.MaxPool2d(2)
        self.out_channels, self.out_freq = channels[-1], freqs[-1]
        self.time_factor = 2 ** len(channels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        """x[B, 1, F, T], frame lengths[B] -> map[B, C, F', T'], lengths[B]"""
        min_frames = self.time_factor
        if x.shape[-1] < min_frames:  # keep at least one frame after all the pooling
            x = nn.functional.pad(x, (0, min_frames - x.shape[-1]))
        inputs = x
        for k, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = conv(x)
            if k == 1 and self.shortcut is not None:
                # The 1x1 stride-2 conv reads only even rows and columns: cropping its input to
                # twice this map's size gives this map's size, with no slice of its output
                # (which kept onnxruntime's blocked layout from running the sum in place).
                x = x + self.shortcut(inputs[..., : 2 * x.shape[-2], : 2 * x.shape[-1]])
            # ReLU after the max-pool: the same values and gradients (ReLU is monotonic), on
            # a quarter of the map; it was 13% of a CNN-GRU training step before the pool.
            x = torch.relu(self.pool(x))
            lengths = frames_after(lengths, kernel=2, stride=2)
            x = norm(x) * frame_mask(lengths, x).to(x.dtype)
        return x, lengths


class FrameLayerNorm(nn.Module):
    """LayerNorm over (channels, frequency) of each time frame: padding-independent."""

    def __init__(self, channels: int, freq: int):
        super().__init__()
        self.norm = nn.LayerNorm([channels, freq])

    def forward(self, x):  # [B, C, F, T]
        return self.norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PositionalEncoding(nn.Module):
    """Sinusoidal positions added to [B, T, D] tokens."""

    def __init__(self, dim: int, max_len: int = 10000):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(max_len, dim)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div[: dim // 2])
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x):
        return x + self.pe[: x.shape[1]]


def classifier(in_dim: int, hidden: int, num_classes: int, dropout: float = 0.0) -> nn.Sequential:
    """The seeds' small head: Linear -> ReLU -> Dropout -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, num_classes))


def final_states(rnn: nn.RNNBase, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The top layer's final state of each direction at each clip's true end, ``[B, dirs * H]``,
    for ``seq[B, T, D]`` (batch first) with ``lengths[B]`` real frames.

    Packing gives them; a packed sequence is data-dependent and cannot be exported
    (``ser-export``), so an export takes the same states from unpacked passes, one per direction:
    the forward direction's output at frame ``length - 1`` of the right-padded clip, which has read
    only real frames, and the backward direction's weights run forward over the clip reversed
    within its length, at the same frame. Exact for a unidirectional stack of any depth and a
    bidirectional single layer (tested equal to the packed states).
    """
    if torch.compiler.is_exporting():
        return _final_states_unpacked(rnn, seq, lengths)
    packed = pack_padded_sequence(seq, lengths.cpu(), batch_first=True, enforce_sorted=False)
    _, hidden = rnn(packed)
    hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # an LSTM's (h, c)
    directions = 2 if rnn.bidirectional else 1
    return torch.cat(list(hidden[-directions:]), dim=-1)


def _final_states_unpacked(rnn: nn.RNNBase, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    if rnn.bidirectional and rnn.num_layers > 1:
        raise NotImplementedError("a bidirectional recurrent stack of several layers mixes each direction's "
                                  "padding into the next layer; only packing keeps it out, and packing "
                                  "cannot be exported")
    last = (lengths - 1).clamp(min=0)
    if not rnn.bidirectional:
        return _at_frame(rnn(seq)[0], last)
    # Each direction once: the forward one over the clip as it is, the backward one as a forward
    # pass of its own weights over the clip reversed within its length; at frame length - 1 both
    # have read only real frames (what follows a clip's reversal is never read by then).
    steps = torch.arange(seq.shape[1], device=seq.device)
    source = (last[:, None] - steps[None, :]).clamp(min=0)
    reversed_clips = seq.gather(1, source[..., None].expand(-1, -1, seq.shape[-1]))
    return torch.cat([_at_frame(_one_direction(rnn, seq, ""), last),
                      _at_frame(_one_direction(rnn, reversed_clips, "_reverse"), last)], dim=-1)


def _at_frame(out: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """``out[B, T, H]`` at each row's ``frame[B]``: ``[B, H]``."""
    return out.gather(1, frame[:, None, None].expand(-1, 1, out.shape[-1]))[:, 0]


def _one_direction(rnn: nn.RNNBase, seq: torch.Tensor, suffix: str) -> torch.Tensor:
    """The outputs of one direction of a single-layer ``rnn`` (its weights ``*_l0{suffix}``) run
    forward over ``seq``: the operator nn.GRU / nn.LSTM call, given one direction's weights."""
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if rnn.bias else [])
    weights = [getattr(rnn, f"{name}_l0{suffix}") for name in names]
    start = seq.new_zeros(1, seq.shape[0], rnn.hidden_size)
    if rnn.mode == "LSTM":
        return torch.ops.aten.lstm.input(seq, [start, start], weights, rnn.bias, 1, 0.0, False, False, True)[0]
    if rnn.mode == "GRU":
        return torch.ops.aten.gru.input(seq, start, weights, rnn.bias, 1, 0.0, False, False, True)[0]
    raise NotImplementedError(f"{rnn.mode}: only a bidirectional GRU or LSTM is exported")


def frames_first(x: torch.Tensor) -> torch.Tensor:
    """[B, C, F, T] conv map -> [B, T, C*F] sequence of frame vectors."""
    b, c, f, t = x.shape
    return x.permute(0, 3, 1, 2).reshape(b, t, c * f)
