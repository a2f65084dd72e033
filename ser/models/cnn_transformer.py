"""CNN-Transformer (seed 004's Base_CNN_Transformer): CNN front end, projection of each frame
to ``d_model``, sinusoidal positions, a Transformer encoder and mean pooling.

Fixes from the seed: the per-block LayerNorm is a real module (the seed built a fresh one
inside ``forward``, so it was never trained) and normalises each frame, attention gets a key
padding mask, pooling averages real frames only, and ``input_freq_bins=8`` is derived.
"""

from __future__ import annotations

import torch
from torch import nn

from ser.models.blocks import ConvStack, PositionalEncoding, classifier, frames_first
from ser.ops import masked_mean, padding


class CNNTransformer(nn.Module):
    def __init__(self, in_features: int, num_classes: int, channels=(32, 64, 128, 256),
                 d_model: int = 256, num_layers: int = 2, num_heads: int = 4,
                 dim_feedforward: int = 1024, dropout: float = 0.2, head_hidden: int = 64):
        super().__init__()
        self.cnn = ConvStack(in_features, channels, norm="layer", residual=False)
        self.project = nn.Linear(self.cnn.out_channels * self.cnn.out_freq, d_model)
        self.positions = PositionalEncoding(d_model)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = classifier(d_model, head_hidden, num_classes)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, lengths = self.cnn(feats.unsqueeze(1), lengths)
        tokens = self.positions(self.project(frames_first(x)))
        tokens = self.encoder(tokens, src_key_padding_mask=padding(lengths, tokens.shape[1]))
        return self.head(masked_mean(tokens, lengths, dim=1))
