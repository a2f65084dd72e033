"""Audio I/O: every clip enters the project through :func:`load_mono`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# libsndfile and soxr release the GIL: decoding many files pays off on this many threads.
DECODE_THREADS = max(1, min(8, os.cpu_count() or 1))


class BadAudio(ValueError):
    """A file that cannot be used as a training clip (empty, truncated, undecodable...)."""


def load_mono(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read ``path`` with soundfile (WAV of any bit depth, integer or float, FLAC, OGG; any
    number of channels and rate), mix to mono, remove any DC offset, bring a float file's
    peaks beyond full scale back to it, and resample to ``sample_rate``.

    Returns float32 samples in [-1, 1]. Raises :class:`BadAudio` for anything unusable (empty,
    undecodable, gone, NaN or infinite samples), so that callers can skip the file with a
    clear message instead of crashing mid-epoch or training on NaN.
    """
    return conditioned(*decode_mono(path), sample_rate)


def decode_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """The file's samples mixed to mono as it holds them (float64, full scale 1.0), and its
    rate; :class:`BadAudio` for anything unusable. :func:`load_mono`'s first half."""
    try:
        samples, native_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for broken headers/payloads
        raise BadAudio(f"cannot decode ({err.__class__.__name__}: {err})") from err
    if samples.size == 0:
        raise BadAudio("no samples")
    if not np.isfinite(samples).all():
        raise BadAudio("non-finite samples (NaN or infinity)")
    return samples.mean(axis=1, dtype=np.float64), native_rate


def conditioned(mono: np.ndarray, native_rate: int, sample_rate: int) -> np.ndarray:
    """:func:`load_mono`'s second half: ``mono`` (float64, changed in place) centred and
    resampled to ``sample_rate``, as float32 in [-1, 1]."""
    mono = centred(mono)
    if native_rate != sample_rate:
        # soxr, not torchaudio: torchaudio builds a polyphase bank of size new/gcd, which for
        # TESS's 24414 Hz (gcd 2 with 16 kHz) takes seconds per clip; soxr takes milliseconds.
        mono = soxr.resample(mono, native_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(np.clip(mono, -1.0, 1.0), dtype=np.float32)  # (resampling may overshoot)


def centred(mono: np.ndarray) -> np.ndarray:
    """float64 samples without their DC offset, peaks beyond full scale brought back to it (in place).

    A DC offset (a recorder's bias) is energy at 0 Hz that carries no emotion but lands in the
    lowest mel band and shifts every frame's level; speech itself has zero mean. ser-predict's
    stream applies this to each window, as if each were a file."""
    offset, divisor = centring(mono)
    mono -= offset
    mono /= divisor
    return mono


def centring(mono: np.ndarray) -> tuple[float, float]:
    """What :func:`centred` does to ``mono``: subtract this offset, then divide by this divisor
    (the peak left after the subtraction where it exceeds full scale; else 1, which is exact)."""
    offset = float(mono.mean())
    return offset, max(1.0, float(np.abs(mono - offset).max()))


def try_load_mono(path: str | Path, sample_rate: int) -> tuple[np.ndarray | None, str | None]:
    """:func:`load_mono` for batch jobs: (samples, None), or (None, why) for a bad file."""
    try:
        return load_mono(path, sample_rate), None
    except BadAudio as err:
        return None, str(err)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM, the format the public corpora are distributed in."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16")
