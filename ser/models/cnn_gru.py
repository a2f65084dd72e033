"""CNN-GRU (seed 004's Base_CNN_GRU): the CNN front end, then a bidirectional GRU over frames.

Fixes from the seed: the GRU input size is derived from the features (was 256*8), the GRU is
packed with the true lengths, and the clip vector is the final hidden state of each
direction (the seed took the output at the last, usually padded, time step).
"""

from __future__ import annotations

import torch
from torch import nn

from ser.models.blocks import ConvStack, classifier, final_states, frames_first


class CNNGRU(nn.Module):
    def __init__(self, in_features: int, num_classes: int, channels=(32, 64, 128, 256),
                 hidden_size: int = 128, num_layers: int = 1, head_hidden: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        self.cnn = ConvStack(in_features, channels)
        self.gru = nn.GRU(self.cnn.out_channels * self.cnn.out_freq, hidden_size, num_layers,
                          batch_first=True, bidirectional=True,
                          dropout=dropout if num_layers > 1 else 0.0)
        self.head = classifier(2 * hidden_size, head_hidden, num_classes, dropout)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, lengths = self.cnn(feats.unsqueeze(1), lengths)
        return self.head(final_states(self.gru, frames_first(x), lengths))
