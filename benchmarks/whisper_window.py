"""Whisper's 30-second window on short clips: what it costs, and whether a shorter window
gives the same states (a faithful shortcut) on the real Whisper tiny.en.

Whisper's encoder reads exactly 30 s of log-mel (3000 frames, 1500 states); ser encodes a
2.5 s clip padded to it, as Whisper was trained, and keeps the 125 states that cover the clip:
about 92% of the compute encodes padding. The shortcut would feed only the clip's own mel
frames (the positional embeddings sliced to match). It is faithful only if the kept states
stay the same, and attention reads every frame of the window, padding included.

    python benchmarks/whisper_window.py [--clips 16] [--seconds 2.5]

Prints clips/s with the full window and with the cut one (one clip per call), and per hidden
state the largest relative difference between the two over the clip's frames, and the cosine
similarity of their clip means (what the pooled cache stores).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import nn

from common import REPO, machine

sys.path.insert(0, str(REPO / "tests"))
from real_whisper import whisper_tiny_en  # noqa: E402


def hidden_states(encoder, mel: torch.Tensor) -> list[torch.Tensor]:
    """WhisperEncoder.forward for a mel of any length: the input embedding, each layer's
    output, the final LayerNorm (positions sliced to the length instead of all 1500)."""
    x = nn.functional.gelu(encoder.conv2(nn.functional.gelu(encoder.conv1(mel)))).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    states = [x]
    for layer in encoder.layers:
        x = layer(x, None)
        x = x[0] if isinstance(x, tuple) else x
        states.append(x)
    states[-1] = encoder.layer_norm(x)
    return states


def main() -> None:
    from transformers import WhisperFeatureExtractor, WhisperModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.5)
    args = parser.parse_args()
    folder = whisper_tiny_en()
    encoder = WhisperModel.from_pretrained(folder).get_encoder().eval()
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    torch.manual_seed(0)
    samples = int(args.seconds * 16000)
    t = torch.arange(samples) / 16000
    # speech-like: a voiced tone whose pitch moves, amplitude-modulated at a syllable rate, plus noise
    clips = [(0.3 * torch.sin(2 * torch.pi * (120 + 40 * k % 160) * t * (1 + 0.1 * torch.sin(3 * t)))
              * (0.5 + 0.5 * torch.sin(2 * torch.pi * 4 * t)) + 0.01 * torch.randn(samples)).numpy()
             for k in range(args.clips)]
    kept = (samples + 319) // 320  # the states covering the clip, as ser keeps them
    full_s = cut_s = 0.0
    worst = None
    cosines = None
    with torch.no_grad():
        for clip in clips:
            mel = extractor([clip], sampling_rate=16000, return_tensors="pt").input_features  # [1, 80, 3000]
            start = time.perf_counter()
            full = hidden_states(encoder, mel)
            full_s += time.perf_counter() - start
            start = time.perf_counter()
            cut = hidden_states(encoder, mel[..., : 2 * kept])
            cut_s += time.perf_counter() - start
            rel = torch.stack([(f[0, :kept] - c[0]).norm() / f[0, :kept].norm() for f, c in zip(full, cut)])
            cos = torch.stack([nn.functional.cosine_similarity(f[0, :kept].mean(0), c[0].mean(0), dim=0)
                               for f, c in zip(full, cut)])
            worst = rel if worst is None else torch.maximum(worst, rel)
            cosines = cos if cosines is None else torch.minimum(cosines, cos)
    print(f"Machine: {machine()}; {torch.get_num_threads()} threads. Whisper tiny.en (real weights), "
          f"{args.clips} clips of {args.seconds} s, one clip per call.")
    print(f"full 30 s window: {args.clips / full_s:.2f} clips/s; cut to the clip: {args.clips / cut_s:.2f} clips/s "
          f"({full_s / cut_s:.1f}x)")
    print("| state | largest relative difference over the clip's frames | lowest cosine of the clip means |")
    print("|---|---:|---:|")
    for k, (r, c) in enumerate(zip(worst.tolist(), cosines.tolist())):
        print(f"| {k} | {r:.3f} | {c:.4f} |")


if __name__ == "__main__":
    main()
