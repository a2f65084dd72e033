"""The head on a pretrained speech encoder (``features=encoder``: ``ser.frontends.encoders``): the SUPERB
recipe. A learned softmax-weighted sum of every hidden state (or one chosen layer, or the
last), pooled over the clip's real frames (mean, or attentive), then a small classifier.

The encoder is the model's front end, so the data side can cache a frozen one's output
(``features.states=pooled``: each state's mean over the clip, exact for this head with mean
pooling, since the weighted sum and the mean are both linear).
"""

from __future__ import annotations

import torch
from torch import nn

from ser.errors import ConfigError, not_one_of
from ser.models.blocks import classifier
from ser.ops import masked_mean, padding

POOLINGS = ("mean", "attentive")


class EncoderHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, num_states: int, per_frame: bool,
                 layer: str | int = "weighted", pooling: str = "mean", head_hidden: int = 256,
                 dropout: float = 0.1):
        """``in_features``: the encoder's hidden size; ``num_states``: its hidden states (the
        CNN features' projection and one per transformer layer); ``per_frame``: whether the
        front end hands every frame (else one mean per state). ``layer``: ``weighted`` (all,
        softmax weights learned), ``last``, or the index of one state (0: before the first
        transformer layer)."""
        super().__init__()
        if pooling not in POOLINGS:
            raise not_one_of("model.net.pooling", pooling, POOLINGS)
        if pooling == "attentive" and not per_frame:
            raise ConfigError("model.net.pooling=attentive weighs each frame: it needs features.states=frames "
                              "(features.states=pooled hands the head one mean per clip).")
        if layer not in ("weighted", "last") and not (isinstance(layer, int) and 0 <= layer < num_states):
            raise ConfigError(f"model.net.layer={layer!r} is not a valid value; use weighted, last or a "
                              f"state index from 0 to {num_states - 1} (this encoder has {num_states} states).")
        self.hidden, self.num_states, self.layer, self.pooling = in_features, num_states, layer, pooling
        self.layer_weights = nn.Parameter(torch.zeros(num_states)) if layer == "weighted" else None
        self.attention = nn.Linear(in_features, 1) if pooling == "attentive" else None
        self.head = classifier(in_features, head_hidden, num_classes, dropout)

    def forward(self, feats: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """feats[B, num_states * hidden, T] (T = 1: states already mean-pooled), frames[B] -> logits"""
        states = feats.unflatten(1, (self.num_states, self.hidden))  # [B, S, H, T]
        if self.layer_weights is not None:
            mixed = torch.einsum("s,bsht->bht", self.layer_weights.softmax(0), states)
        else:
            mixed = states[:, -1 if self.layer == "last" else self.layer]
        return self.head(self.pooled(mixed, frames))

    def pooled(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """[B, H, T] -> [B, H] over each clip's real frames."""
        if self.attention is None:
            return masked_mean(x, frames, dim=-1)
        scores = self.attention(x.transpose(1, 2)).squeeze(-1)  # [B, T]
        weights = scores.masked_fill(padding(frames, x.shape[-1]), float("-inf")).softmax(-1)
        return torch.einsum("bt,bht->bh", weights, x)
