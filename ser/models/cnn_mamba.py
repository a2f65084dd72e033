"""CNN-Mamba: seed 004's CNN front end followed by Mamba blocks over its frames (the seed's
planned "Mamba-CNN")."""

from __future__ import annotations

import torch
from torch import nn

from ser.models.blocks import ConvStack, classifier, frames_first
from ser.models.mamba import MambaEncoder
from ser.ops import masked_mean


class CNNMamba(nn.Module):
    def __init__(self, in_features: int, num_classes: int, channels=(32, 64, 128, 256),
                 d_model: int = 128, num_layers: int = 2, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, head_hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.cnn = ConvStack(in_features, channels)
        self.project = nn.Linear(self.cnn.out_channels * self.cnn.out_freq, d_model)
        self.encoder = MambaEncoder(d_model, num_layers, d_state, d_conv, expand)
        self.head = classifier(d_model, head_hidden, num_classes, dropout)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, lengths = self.cnn(feats.unsqueeze(1), lengths)
        x = self.encoder(self.project(frames_first(x)))
        return self.head(masked_mean(x, lengths, dim=1))
