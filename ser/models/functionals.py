"""The classic baseline on utterance functionals (``features=egemaps``): the functionals
standardised with the training split's statistics (a BatchNorm without its own scale, whose
running statistics are that split's), then a linear classifier or a small MLP.

One frame per clip: there is no time axis left to model, which is the point of a baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from ser.models.blocks import classifier


class FunctionalsClassifier(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: int | None = None, dropout: float = 0.0):
        """``hidden``: None for a linear classifier (the logistic-regression baseline), else
        the width of an MLP's one hidden layer."""
        super().__init__()
        self.standardise = nn.BatchNorm1d(in_features, affine=False)
        self.head = nn.Linear(in_features, num_classes) if hidden is None else classifier(
            in_features, hidden, num_classes, dropout)

    def forward(self, feats: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """feats[B, F, 1] (one row of functionals per clip), frames[B] -> logits[B, classes]"""
        return self.head(self.standardise(feats[..., 0]))
