"""What channel augmentation costs a training step (``augment=channel``).

    python benchmarks/channel.py                 # CNN-GRU, 32 clips of 2.5 s, CPU (or the GPU)
    python benchmarks/channel.py --batch-size 64

One training step (forward, backward, Adam) of the real LightningModule, two ways side by side:
the cached path every other recipe takes (the log-mel computed once, normalised per speaker;
gain and SpecAugment per step) and ``augment=channel`` (waveforms through rooms, microphones
and noise, then the log-mel and its speaker's statistics every step). Every effect is drawn
for every clip here (p = 1), the most a step can cost; the default's p = 0.5 draws each for
half. Also the effects alone, per batch. Ratios are against the cached step.
"""

from __future__ import annotations

import argparse
import math

import torch

from common import compose, machine, timed


def speech_like(batch: int, seconds: float, rate: int = 16000) -> torch.Tensor:
    time = torch.arange(int(seconds * rate)) / rate
    pitch = 100 + 200 * torch.rand(batch, 1)
    return 0.3 * torch.sin(2 * math.pi * pitch * time) * (1 + torch.sin(3 * time)) + 0.01 * torch.randn(batch, len(time))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    from hydra.utils import instantiate

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    every = [f"augment.channel.{effect}.p=1" for effect in ("room", "microphone", "noise")]
    cached_module = instantiate(compose(["model=cnn_gru"]).model).to(device).train()
    channel_module = instantiate(compose(["model=cnn_gru", "augment=channel", *every]).model).to(device).train()
    channel_module.load_state_dict(cached_module.state_dict())
    waves = speech_like(args.batch_size, args.seconds).to(device)
    lengths = torch.full((args.batch_size,), waves.shape[1], device=device)
    labels = torch.randint(len(cached_module.classes), (args.batch_size,), device=device)
    with torch.no_grad():  # the cache's rows: the log-mel, standardised by the clips' own statistics
        mel, frames = cached_module.frontend.log_mel(waves, lengths)
        mean, std = mel.mean((0, 2)), mel.std((0, 2))
        mel = (mel - mean[:, None]) / std[:, None]
    statistics = mean.expand(args.batch_size, -1), std.expand(args.batch_size, -1)

    def step(module, batch):
        optimiser = step.optimisers.setdefault(id(module), torch.optim.Adam(module.parameters(), 1e-3))
        optimiser.zero_grad()
        module.training_step(batch, 0).backward()
        optimiser.step()
    step.optimisers = {}

    ways = {"cached log-mel (augment=default)": lambda: step(cached_module, (mel, frames, labels)),
            "augment=channel, every effect": lambda: step(channel_module, (waves, lengths, labels, *statistics))}
    channel = channel_module.augment.channel
    rate = channel_module.sample_rate
    draw = channel.draw(waves, lengths, rate)
    parts = {"rooms drawn": lambda: channel._rooms(torch.ones(args.batch_size, dtype=torch.bool, device=device), rate),
             "microphones drawn (from the bank)": lambda: channel._microphones(args.batch_size, rate, torch.device(device)),
             "noise drawn": lambda: channel._noises(torch.ones(args.batch_size, dtype=torch.bool, device=device),
                                                    waves.shape[1], rate),
             "applied (one FFT convolution, add_noise)": lambda: channel.apply(waves, lengths, draw)}
    baseline = None
    print(f"| {args.batch_size} clips of {args.seconds} s, {device} | ms | x cached step |")
    print("|---|---:|---:|")
    for name, fn in {**ways, **parts}.items():
        seconds = timed(fn, args.repeats)
        baseline = baseline or seconds
        print(f"| {name} | {1000 * seconds:.1f} | {seconds / baseline:.2f} |")
    print(f"\nmachine: {machine()}")


if __name__ == "__main__":
    main()
