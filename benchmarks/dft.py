"""The mel power spectrum an exported log-mel model computes, four ways, on the same batch: torch's
STFT and mel filters (what a checkpoint runs), and in onnxruntime: ONNX's STFT operator, a dense DFT
basis as one Conv (the usual way to lower a DFT), and ser-export's ``MatmulMelPower`` (a Cooley-Tukey
split in MatMuls), at the log-mel front end's n_fft and hop (2048, 512; 128 mels) and at Whisper's
(400, 160; 80 mels).

    python benchmarks/dft.py [--clips 16] [--seconds 2.5] [--repeats 7]

Prints ms per batch of each (the ways take turns in every round; the fastest round of each), its
time over torch's (the median over rounds of the two in the same round), and each graph's largest difference from torch relative to the batch's peak.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from common import machine, paired_ratio, timed_side_by_side


class TorchMel(nn.Module):
    """torch.stft's power (no centre padding) through the mel filters: a checkpoint's front end."""

    def __init__(self, n_fft: int, hop: int, filters: torch.Tensor):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))
        self.register_buffer("filters", filters)

    def forward(self, waves):
        spectrum = torch.stft(waves, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        return (spectrum.real.square() + spectrum.imag.square()).transpose(1, 2) @ self.filters


class ConvMel(TorchMel):
    """The same from a dense basis: one Conv of the window times cos and -sin."""

    def __init__(self, n_fft: int, hop: int, filters: torch.Tensor):
        super().__init__(n_fft, hop, filters)
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        window = torch.hann_window(n_fft, dtype=torch.float64)
        angle = 2 * math.pi * k * n / n_fft
        self.register_buffer("basis", torch.cat([window * torch.cos(angle), -window * torch.sin(angle)]).float()[:, None])

    def forward(self, waves):
        real, imag = nn.functional.conv1d(waves[:, None], self.basis, stride=self.hop).chunk(2, dim=1)
        return (real.square() + imag.square()).transpose(1, 2) @ self.filters


class MatmulMel(nn.Module):
    """ser-export's graph: MatmulMelPower, in the layout TorchMel returns."""

    def __init__(self, n_fft: int, hop: int, filters: torch.Tensor):
        super().__init__()
        from ser.frontends.spectral import MatmulMelPower

        self.power = MatmulMelPower(torch.hann_window(n_fft), n_fft, hop, filters)

    def forward(self, waves):
        return self.power(waves).transpose(1, 2)


def session(module: nn.Module, waves: torch.Tensor, folder: Path, name: str) -> ort.InferenceSession:
    path = folder / f"{name}.onnx"
    dynamic = torch.export.Dim.DYNAMIC
    torch.onnx.export(module, (waves,), str(path), input_names=["waves"], opset_version=18, dynamo=True, verbose=False,
                      dynamic_shapes=({0: dynamic, 1: dynamic},))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def main():
    import torchaudio.functional as F

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    waves = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (args.clips, int(args.seconds * 16000))).astype(np.float32))
    print(f"{machine()}; {args.clips} clips of {args.seconds} s, {args.repeats} rounds, the ways in turn")
    print("| n_fft / hop, mels | torch ms | onnxruntime STFT ms (x torch) | dense Conv basis ms (x torch) | "
          "MatmulMelPower ms (x torch) | largest difference: STFT / Conv / MatMul |")
    print("|---|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        for n_fft, hop, mels in ((2048, 512, 128), (400, 160, 80)):
            filters = F.melscale_fbanks(n_fft // 2 + 1, 0.0, 8000.0, mels, 16000)
            reference = TorchMel(n_fft, hop, filters)
            feed = {"waves": waves.numpy()}
            graphs = {name: session(cls(n_fft, hop, filters), waves, Path(folder), f"{name}{n_fft}")
                      for name, cls in (("stft", TorchMel), ("conv", ConvMel), ("matmul", MatmulMel))}
            ways = {"torch": lambda r=reference: r(waves)} | {
                name: (lambda s=graph, f=feed: s.run(None, f)) for name, graph in graphs.items()}
            rounds = timed_side_by_side(ways, args.repeats)
            ms = {name: 1000 * min(seconds) for name, seconds in rounds.items()}
            ratio = {name: paired_ratio(rounds[name], rounds["torch"]) for name in graphs}
            expected = reference(waves).numpy()
            errors = [float(np.abs(graph.run(None, feed)[0] - expected).max() / np.abs(expected).max())
                      for graph in graphs.values()]
            cells = [f"{ms[name]:.1f} ({ratio[name]:.2f}x)" for name in graphs]
            print(f"| {n_fft} / {hop}, {mels} | {ms['torch']:.1f} | {' | '.join(cells)} | "
                  f"{' / '.join(f'{e:.1e}' for e in errors)} |", flush=True)


if __name__ == "__main__":
    main()
