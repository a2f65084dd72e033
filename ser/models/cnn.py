"""Plain CNN (seed 004's Base_CNN): four conv blocks with a residual shortcut, global pooling,
and a two-layer head.

Fixes from the seed: the shortcut is aligned with the pooled map (the seed padded a 1x1
conv by one and cropped), global max pooling only sees real frames, the head has its
non-linearity, and the class count comes from the corpus (was 6).
"""

from __future__ import annotations

import torch
from torch import nn

from ser.models.blocks import ConvStack, classifier
from ser.ops import masked_max


class BaseCNN(nn.Module):
    def __init__(self, in_features: int, num_classes: int, channels=(32, 64, 128, 256),
                 head_hidden: int = 64, dropout: float = 0.0):
        super().__init__()
        self.cnn = ConvStack(in_features, channels)
        self.head = classifier(self.cnn.out_channels, head_hidden, num_classes, dropout)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, lengths = self.cnn(feats.unsqueeze(1), lengths)
        return self.head(masked_max(x, lengths))
