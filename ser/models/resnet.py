"""ResNet-18 from torchvision with a one-channel stem, trained from scratch (seed 004).

torchvision's network is used as is. To keep predictions independent of batch padding, a
forward hook on every BatchNorm (and the stem's max-pool, whose last window can
straddle the end of a clip) re-zeroes the frames past each clip's end at that layer's
time resolution, which is exactly what zero padding would have left there for a clip alone.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from ser.ops import frame_mask, frames_after, masked_mean


class ResNet18(nn.Module):
    def __init__(self, in_features: int, num_classes: int, width: int = 64, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)  # before the classifier, as in every ser model
        net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(1, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.net = net
        self._lengths: torch.Tensor | None = None
        self._strides = self._time_strides()
        self._final_stride = max(self._strides.values())
        for norm in self._strides:
            norm.register_forward_hook(self._mask_padding)

    def _time_strides(self) -> dict[nn.Module, int]:
        """Cumulative time stride at each BatchNorm and the max-pool, read off one probe pass."""
        sizes = {}
        hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, o.shape[-1]))
                 for m in self.net.modules() if isinstance(m, (nn.BatchNorm2d, nn.MaxPool2d))]
        probe = 1024
        with torch.no_grad():
            self.net.eval()
            self._features(torch.zeros(1, 1, 32, probe))
            self.net.train()
        for h in hooks:
            h.remove()
        return {m: probe // size for m, size in sizes.items()}

    def _mask_padding(self, module, inputs, output):
        if self._lengths is None:
            return output
        stride = self._strides[module]
        valid = frames_after(self._lengths, kernel=1, stride=stride)  # ceil(n / stride): padded convs
        return output * frame_mask(valid, output).to(output.dtype)

    def _features(self, x):
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self._lengths = lengths
        try:
            x = self._features(feats.unsqueeze(1))  # [B, 512, F/32, T/32]
        finally:
            self._lengths = None
        stride = self._final_stride
        valid = frames_after(lengths, kernel=1, stride=stride).clamp(max=x.shape[-1])
        return self.net.fc(self.dropout(masked_mean(x.mean(dim=2), valid)))
