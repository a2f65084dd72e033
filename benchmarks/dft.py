"""The power spectrum an exported log-mel model computes, three ways, on the same batch: torch's
STFT (what a checkpoint runs), onnxruntime's STFT operator (what ser-export's graph runs today),
and the windowed DFT as a fixed Conv basis in onnxruntime (what issue 40 proposes), at the log-mel
front end's n_fft and hop (2048, 512) and at a small window.

    python benchmarks/dft.py [--clips 16] [--seconds 2.5] [--repeats 5]

Prints ms per batch of each, its ratio against torch's STFT, and the Conv basis's largest
relative difference from torch's power spectrum. The fastest of --repeats passes is reported.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from common import machine


class TorchPower(nn.Module):
    """|STFT|^2 with torch.stft, as ser's front end computes it (no centre padding)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, waves):
        spectrum = torch.stft(waves, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        return spectrum.real.square() + spectrum.imag.square()


class ConvPower(nn.Module):
    """The same power spectrum from a fixed basis: one Conv of the window times cos and -sin."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.hop = hop
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        window = torch.hann_window(n_fft, dtype=torch.float64)
        angle = 2 * math.pi * k * n / n_fft
        self.register_buffer("basis", torch.cat([window * torch.cos(angle), -window * torch.sin(angle)]).float()[:, None])

    def forward(self, waves):
        real, imag = nn.functional.conv1d(waves[:, None], self.basis, stride=self.hop).chunk(2, dim=1)
        return real.square() + imag.square()


def fastest_ms(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return 1000 * min(times)


def session(module: nn.Module, waves: torch.Tensor, folder: Path, name: str) -> ort.InferenceSession:
    path = folder / f"{name}.onnx"
    torch.onnx.export(module, (waves,), str(path), input_names=["waves"], opset_version=18, dynamo=True, verbose=False)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    waves = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (args.clips, int(args.seconds * 16000))).astype(np.float32))
    print(f"{machine()}; {args.clips} clips of {args.seconds} s, fastest of {args.repeats}")
    print("| n_fft / hop | torch STFT ms | onnxruntime STFT ms (x torch) | onnxruntime Conv basis ms (x torch) | Conv max rel. diff |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        for n_fft, hop in ((2048, 512), (400, 160)):
            reference = TorchPower(n_fft, hop)
            torch_ms = fastest_ms(lambda m=reference: m(waves), args.repeats)
            feed = {"waves": waves.numpy()}
            row = [f"{n_fft} / {hop}", f"{torch_ms:.1f}"]
            for name, module in (("stft", reference), ("conv", ConvPower(n_fft, hop))):
                ran = session(module, waves, Path(folder), f"{name}{n_fft}")
                ms = fastest_ms(lambda s=ran, f=feed: s.run(None, f), args.repeats)
                row.append(f"{ms:.1f} ({ms / torch_ms:.2f}x)")
            power, conv = reference(waves), ConvPower(n_fft, hop)(waves)
            row.append(f"{float(((power - conv).abs() / (power.abs() + 1e-3)).max()):.1e}")
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
