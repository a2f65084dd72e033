"""LSTM on MFCC frames (seed 000): LSTM 256, then FC 128 and 64 with dropout 0.2.

Fixes from the seed: inputs are batch-normalised per coefficient, and the sequence is packed and the clip vector is the LSTM's final hidden
state at each clip's true last frame, not the output at the last (padded) time step.
"""

from __future__ import annotations

import torch
from torch import nn

from ser.models.blocks import final_states


class LSTMClassifier(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden_size: int = 256,
                 num_layers: int = 1, fc_sizes=(128, 64), dropout: float = 0.2):
        super().__init__()
        # MFCC coefficients differ in scale by orders of magnitude (c0 is the log energy);
        # a per-coefficient BatchNorm learns dataset-level scaling and keeps the gates unsaturated.
        self.input_norm = nn.BatchNorm1d(in_features)
        self.lstm = nn.LSTM(in_features, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        layers, width = [], hidden_size
        for size in fc_sizes:
            layers += [nn.Dropout(dropout), nn.Linear(width, size), nn.ReLU()]
            width = size
        self.head = nn.Sequential(*layers, nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        feats = self.input_norm(feats)
        return self.head(final_states(self.lstm, feats.transpose(1, 2), lengths))
