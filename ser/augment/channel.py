"""Channel augmentation on the waveform: the rooms, microphones and noise that test speakers'
recordings may have and the training corpus lacked (``augment=channel``).

SpeechBrain's recipes corrupt the waveform the same way (``speechbrain.augment.time_domain``:
``AddReverb``, ``AddNoise`` at a random SNR); here every step is a torchaudio building block,
batched on the model's device, in training only, before the front end:

* **room**: each clip convolved with a room impulse response, generated (Polack's statistical
  model of a diffuse field: a direct path, then Gaussian noise whose energy falls 60 dB in RT60
  seconds, ``drr_db`` below the direct path in all) or read from the user's folder of measured
  ones (the OpenSLR 28 RIRs, say);
* **microphone**: a frequency response the corpus's microphones did not have: a few peaking
  filters and a low and a high shelf (``torchaudio.functional.equalizer_biquad``,
  ``bass_biquad``, ``treble_biquad``);
* **noise**: coloured noise (power falling as 1/f^beta: 0 white, 1 pink, 2 brown) or an excerpt
  of the user's noise recordings (MUSAN's, say), added at a random SNR measured over the clip's
  real samples (``torchaudio.functional.add_noise``).

Room and microphone make one impulse response per clip, applied in one FFT convolution
(``torchaudio.functional.fftconvolve``); the noise is added after them, so the SNR is the one a
listener hears. A clip's length is kept: its reverberant tail past its last sample is cut, as a
recording that stops cuts it. Each effect reads only a clip's real samples and leaves its
padding zero, so for the same draw a clip comes out the same alone or padded in a batch.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as F
from torch import nn

from ser.data.audio import BadAudio, conditioned, load_mono
from ser.errors import ConfigError
from ser.ops import real_frames

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
# The microphone's impulse response, kept: its slowest part, a 150 Hz peak of Q 2, has fallen
# 60 dB by 29 ms (time constant 2Q / (2 pi f)).
MICROPHONE_SECONDS = 0.032
MICROPHONE_BANK = 256  # microphones made once per process (~1 s); each clip takes one of them at random
NOISE_TAPS = 4096  # the colouring filter: its slope holds down to sample_rate / NOISE_TAPS (4 Hz at 16 kHz)
MAX_RIR_SECONDS = 2.0  # a user's RIR is cut here: 60 dB of decay in a hall of RT60 2 s
# lfilter clamps its output to [-1, 1]: the impulse a filter chain answers is this small, so
# that no gain of the chain's clips it, and the response is scaled back after.
IMPULSE = 1e-3


def _span(owner: str, name: str, value) -> tuple[float, float]:
    """A ``[low, high]`` config value (or one number: low = high) as a checked pair."""
    low, high = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"augment.channel.{owner}.{name}={list(value) if not isinstance(value, (int, float)) else value} "
                          "must be [low, high] with low <= high (finite numbers)")
    return float(low), float(high)


@dataclass(frozen=True)
class Options:
    """What every effect has: the share of clips it changes, and a folder of the user's own
    recordings to take instead of generated ones (None: generated)."""

    p: float = 0.5
    folder: str | None = None
    owner = ""  # the config key under augment.channel

    def __post_init__(self):
        if not 0 <= self.p <= 1:
            raise ConfigError(f"augment.channel.{self.owner}.p={self.p} is a probability: 0 to 1")
        for item in fields(self):
            if item.metadata.get("span"):
                object.__setattr__(self, item.name, _span(self.owner, item.name, getattr(self, item.name)))


def span(*default: float):
    return field(default=default, metadata={"span": True})


@dataclass(frozen=True)
class Room(Options):
    rt60: tuple[float, float] = span(0.2, 0.8)  # seconds for the reverberation to fall 60 dB
    drr_db: tuple[float, float] = span(0.0, 12.0)  # direct path over the reverberation, dB
    owner = "room"

    def __post_init__(self):
        super().__post_init__()
        if self.rt60[0] <= 0:
            raise ConfigError(f"augment.channel.room.rt60={list(self.rt60)}: a reverberation time is above 0 s")


@dataclass(frozen=True)
class Microphone(Options):
    peaks: int = 3  # peaking filters per clip
    gain_db: float = 6.0  # each filter's gain, uniform in [-gain_db, gain_db]
    q: tuple[float, float] = span(0.7, 2.0)  # the peaks' quality factor (their narrowness)
    frequency: tuple[float, float] = span(150.0, 6000.0)  # the peaks' centres (log-uniform), below 0.45 x the rate
    shelves: bool = True  # a low shelf (100-400 Hz) and a high shelf (2-6 kHz) besides
    owner = "microphone"

    def __post_init__(self):
        super().__post_init__()
        if self.folder is not None:
            raise ConfigError("augment.channel.microphone takes no folder: its responses are generated")
        if self.peaks < 0 or self.gain_db < 0 or self.q[0] <= 0 or self.frequency[0] <= 0:
            raise ConfigError(f"augment.channel.microphone: peaks ({self.peaks}) and gain_db ({self.gain_db}) are "
                              f"at least 0, q ({list(self.q)}) and frequency ({list(self.frequency)}) above 0")


@dataclass(frozen=True)
class Noise(Options):
    snr_db: tuple[float, float] = span(5.0, 20.0)  # the clip's power over the noise's, dB
    colour: tuple[float, float] = span(0.0, 2.0)  # beta of power ~ 1/f^beta (generated noise)
    owner = "noise"


class Draw(NamedTuple):
    """One batch's channels, drawn: what :meth:`ChannelAugment.apply` does to it."""

    kernels: torch.Tensor | None  # [B, K] each clip's room and microphone (a unit impulse where neither)
    noise: torch.Tensor | None  # [B, T] noise for each clip, before its scaling to the SNR
    snr_db: torch.Tensor | None  # [B]
    noisy: torch.Tensor | None  # [B] bool: the clips that get noise


class ChannelAugment(nn.Module):
    """Room, microphone and noise on a batch of waveforms (see the module's docstring); each
    effect reaches a clip with its own probability ``p``. No parameters, no buffers: a model's
    checkpoint is the same with it or without."""

    def __init__(self, room: dict | None = None, microphone: dict | None = None, noise: dict | None = None,
                 keep_clean_level: bool = True):
        """``keep_clean_level``: a model normalising per speaker standardises a changed clip as if
        the channel's mean change per band were in its speaker's statistics (``SERModule._through_channel``)."""
        super().__init__()
        self.keep_clean_level = keep_clean_level
        self.room, self.microphone, self.noise = Room(**(room or {})), Microphone(**(microphone or {})), Noise(**(noise or {}))
        self.rooms = AudioFolder(self.room.folder, "room") if self.room.folder else None
        self.noises = AudioFolder(self.noise.folder, "noise") if self.noise.folder else None

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor, sample_rate: int) -> torch.Tensor:
        with torch.autocast(waves.device.type, enabled=False):  # FFTs and filters in float32
            waves = waves.float()
            return self.apply(waves, lengths, self.draw(waves, lengths, sample_rate))

    # -- the draw --------------------------------------------------------------------------
    def draw(self, waves: torch.Tensor, lengths: torch.Tensor, sample_rate: int) -> Draw:
        batch, device = len(waves), waves.device
        in_room, miked, noisy = (torch.rand(batch, device=device) < o.p for o in (self.room, self.microphone, self.noise))
        kernels = None
        if bool(in_room.any() or miked.any()):
            rooms = self._rooms(in_room, sample_rate)
            microphones = unit_impulses(batch, device)
            if bool(miked.any()):
                microphones = self._pad_rows(microphones, miked, self._microphones(int(miked.sum()), sample_rate, device))
            kernels = F.fftconvolve(rooms, microphones)
        noise = snr = None
        if bool(noisy.any()):
            noise = self._noises(noisy, waves.shape[-1], sample_rate)
            snr = uniform(self.noise.snr_db, batch, device)
        return Draw(kernels, noise, snr, noisy if noise is not None else None)

    def _rooms(self, chosen: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """[B, K] a room's impulse response for the chosen clips, a unit impulse for the others."""
        count, device = int(chosen.sum()), chosen.device
        if count == 0:
            return unit_impulses(len(chosen), device)
        if self.rooms is not None:
            responses = self.rooms.impulse_responses(count, sample_rate, device)
        else:
            responses = room_impulse_responses(uniform(self.room.rt60, count, device),
                                               uniform(self.room.drr_db, count, device), sample_rate)
        return self._pad_rows(unit_impulses(len(chosen), device), chosen, responses)

    @staticmethod
    def _pad_rows(base: torch.Tensor, chosen: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``base`` [B, K0] with the ``chosen`` rows replaced by ``rows`` [n, K] (both zero-padded to one width)."""
        width = max(base.shape[1], rows.shape[1])
        out = nn.functional.pad(base, (0, width - base.shape[1]))
        out[chosen] = nn.functional.pad(rows, (0, width - rows.shape[1]))
        return out

    def _microphones(self, count: int, sample_rate: int, device: torch.device) -> torch.Tensor:
        """[count, taps] microphone responses, each drawn from a bank of MICROPHONE_BANK made on
        first use: torchaudio's biquads take one set of coefficients a call, so a fresh chain
        for every clip would cost the host ~2 ms a clip, every step."""
        bank = microphone_bank(self.microphone, sample_rate)
        return bank[torch.randint(len(bank), (count,))].to(device)

    def _noises(self, chosen: torch.Tensor, samples: int, sample_rate: int) -> torch.Tensor:
        """[B, samples] noise for the chosen clips (zero for the others)."""
        batch, device = len(chosen), chosen.device
        noise = torch.zeros(batch, samples, device=device)
        count = int(chosen.sum())
        if self.noises is not None:
            noise[chosen] = self.noises.excerpts(count, samples, sample_rate, device)
        else:
            noise[chosen] = coloured_noise(uniform(self.noise.colour, count, device), samples)
        return noise

    # -- the application -------------------------------------------------------------------
    @staticmethod
    def apply(waves: torch.Tensor, lengths: torch.Tensor, draw: Draw) -> torch.Tensor:
        """``waves[B, T]`` through each clip's room and microphone, then its noise at its SNR
        over its real samples; padding stays zero and every clip keeps its length."""
        real = real_frames(lengths, waves.shape[-1]).to(waves.dtype)
        out = waves * real
        if draw.kernels is not None:
            out = F.fftconvolve(out, draw.kernels)[..., : waves.shape[-1]] * real
        if draw.noise is not None:
            # A clip without noise is given its SNR too (add_noise scales every row) and kept as it was.
            noisy = F.add_noise(out, draw.noise + (~draw.noisy[:, None]).to(out.dtype), draw.snr_db, lengths)
            out = torch.where(draw.noisy[:, None], noisy, out) * real
        return out


def uniform(bounds: tuple[float, float], count: int, device: torch.device | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(count, device=device, generator=generator)


def unit_impulses(count: int, device: torch.device) -> torch.Tensor:
    return torch.ones(count, 1, device=device)


@functools.cache
def microphone_bank(options: Microphone, sample_rate: int) -> torch.Tensor:
    """The MICROPHONE_BANK responses every run with these options draws from: made once per
    process from a generator of their own, so that they are the same in every run and take
    nothing from the run's random numbers (a run in a multirun draws as it would alone)."""
    threads = torch.get_num_threads()
    # Each biquad is a few tiny convolutions: one thread makes the bank in 0.5 s where several,
    # waiting on each other (and on any other busy process), took 10 s on 2 cores (measured).
    torch.set_num_threads(1)
    try:
        return microphone_responses(options, MICROPHONE_BANK, sample_rate, torch.Generator().manual_seed(0))
    finally:
        torch.set_num_threads(threads)


def microphone_responses(options: Microphone, count: int, sample_rate: int,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """[count, taps] random microphone responses (on the CPU): ``peaks`` peaking filters, centres
    log-uniform in ``frequency`` (at most 0.45 x the rate), and two shelves."""
    nyquist = 0.45 * sample_rate

    def draw(bounds: tuple[float, float]) -> float:
        return float(uniform(bounds, 1, generator=generator)[0])

    def log_uniform(low: float, high: float) -> float:
        return math.exp(draw((math.log(low), math.log(high))))

    def gain(limit_db: float) -> float:
        return draw((-limit_db, limit_db))

    low, high = (min(f, nyquist) for f in options.frequency)
    responses = []
    for _ in range(count):
        response = torch.zeros(1, max(1, round(MICROPHONE_SECONDS * sample_rate)))
        response[0, 0] = IMPULSE
        for _ in range(options.peaks):
            response = F.equalizer_biquad(response, sample_rate, log_uniform(low, high), gain(options.gain_db),
                                          draw(options.q))
        if options.shelves:
            response = F.bass_biquad(response, sample_rate, gain(options.gain_db), log_uniform(100.0, min(400.0, nyquist)))
            response = F.treble_biquad(response, sample_rate, gain(options.gain_db),
                                       log_uniform(min(2000.0, nyquist), min(6000.0, nyquist)))
        responses.append(response / IMPULSE)
    return torch.cat(responses)


def room_impulse_responses(rt60: torch.Tensor, drr_db: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Polack's statistical room: ``[B, K]`` impulse responses of a direct path (1 at sample 0)
    and a diffuse tail of Gaussian noise whose energy falls 60 dB in ``rt60[B]`` seconds (its
    amplitude as ``10^(-3 t / rt60)``), scaled to ``drr_db[B]`` below the direct path's energy.
    K covers the longest RT60 of the batch."""
    taps = max(2, math.ceil(float(rt60.max()) * sample_rate))
    time = torch.arange(1, taps, device=rt60.device) / sample_rate
    tail = torch.randn(len(rt60), taps - 1, device=rt60.device) * 10 ** (-3 * time / rt60[:, None])
    tail = tail * torch.sqrt(10 ** (-drr_db / 10) / tail.square().sum(1))[:, None]
    return torch.cat([torch.ones(len(rt60), 1, device=rt60.device), tail], dim=1)


def coloured_noise(colour: torch.Tensor, samples: int) -> torch.Tensor:
    """``[B, samples]`` Gaussian noise whose power falls as ``1/f^colour[B]``: white noise through
    a linear-phase filter of that magnitude (NOISE_TAPS long), kept where the filter has filled."""
    device = colour.device
    frequency = torch.fft.rfftfreq(NOISE_TAPS, device=device)
    magnitude = frequency.clamp(min=float(frequency[1]))[None, :] ** (-colour[:, None] / 2)
    kernel = torch.fft.irfft(magnitude, n=NOISE_TAPS).roll(NOISE_TAPS // 2, dims=-1)
    kernel = kernel * torch.hann_window(NOISE_TAPS, device=device)
    white = torch.randn(len(colour), samples + NOISE_TAPS - 1, device=device)
    return F.fftconvolve(white, kernel, mode="valid")


class AudioFolder:
    """The user's own recordings under a folder (WAV, FLAC or OGG, any rate and channels), read
    when a batch draws them: room impulse responses or noise. A file that cannot be read is
    skipped with a warning and not drawn again."""

    def __init__(self, folder: str, owner: str):
        self.root, self.owner = Path(folder).expanduser(), owner
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not self.files:
            raise ConfigError(f"augment.channel.{owner}.folder={folder}: no audio file ({', '.join(AUDIO_SUFFIXES)}) "
                              "under it" + ("" if self.root.is_dir() else " (it is not a folder)"))

    def _pick(self) -> Path:
        if not self.files:
            raise ConfigError(f"augment.channel.{self.owner}.folder={self.root}: none of its files could be read "
                              "(each was listed above)")
        return self.files[int(torch.randint(len(self.files), ()))]

    def _drop(self, path: Path, err: Exception) -> None:
        log.warning("augment.channel.%s: skipped %s, which cannot be read (%s)", self.owner, path, err)
        self.files.remove(path)

    def impulse_responses(self, count: int, sample_rate: int, device: torch.device) -> torch.Tensor:
        """[count, K] measured responses, each from its strongest sample (the direct path, moved
        to sample 0 so that speech is not delayed) and scaled to make that sample 1."""
        rows = []
        while len(rows) < count:
            path = self._pick()
            try:
                response = load_mono(path, sample_rate)
            except BadAudio as err:
                self._drop(path, err)
                continue
            start = int(np.abs(response).argmax())
            response = response[start: start + int(MAX_RIR_SECONDS * sample_rate)]
            rows.append(torch.from_numpy(response / response[0]))
        width = max(len(r) for r in rows)
        return torch.stack([nn.functional.pad(r, (0, width - len(r))) for r in rows]).to(device)

    def excerpts(self, count: int, samples: int, sample_rate: int, device: torch.device) -> torch.Tensor:
        """[count, samples] excerpts at random places of random files (a file shorter than that
        repeated), each with a faint white floor so that a silent stretch still has a level."""
        rows = []
        while len(rows) < count:
            path = self._pick()
            try:
                rows.append(self._excerpt(path, samples, sample_rate))
            except (BadAudio, RuntimeError, sf.LibsndfileError) as err:
                self._drop(path, err)
        noise = torch.from_numpy(np.stack(rows)).to(device)
        return noise + 1e-6 * torch.randn_like(noise)

    @staticmethod
    def _excerpt(path: Path, samples: int, sample_rate: int) -> np.ndarray:
        info = sf.info(str(path))
        wanted = math.ceil(samples * info.samplerate / sample_rate) + 1
        start = int(torch.randint(max(1, info.frames - wanted + 1), ()))
        part, rate = sf.read(str(path), start=start, frames=wanted, dtype="float32", always_2d=True)
        if len(part) == 0 or not np.isfinite(part).all():
            raise BadAudio("no samples" if len(part) == 0 else "non-finite samples")
        mono = conditioned(part.mean(axis=1, dtype=np.float64), rate, sample_rate)
        return np.resize(mono, samples)  # repeated where the file is shorter than the clip
