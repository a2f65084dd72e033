"""A second speech source, for evaluation only: eSpeak NG actors in RAVDESS's layout.

The built-in corpus and this one share no code that makes sound: here every clip is spoken by
eSpeak NG (Debian's ``espeak-ng`` package, a formant synthesiser with its own voices,
accents and prosody model). Twelve actors, each an English accent and a voice variant of its
own, with a register and tempo of their own, say RAVDESS's two statements in its eight
emotions at normal and strong intensity, twice; each actor acts emotions through SSML
prosody (pitch, range, rate, volume) weighted in a way of their own. Files are written at
RAVDESS's 48 kHz, 16-bit, as ``Actor_NN/03-01-EE-II-SS-RR-NN.wav``, through a recording
chain of each actor's own (a low-pass, a noise floor). The default recipe is never tuned on
it: ``benchmarks/generalisation.py`` only reports it.

    python benchmarks/espeak_corpus.py OUT_DIR [--actors 12]
    python benchmarks/espeak_corpus.py OUT_DIR --rooms-of CORPUS   # each actor in a room of their own
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RATE = 48000  # RAVDESS's
STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan")
MALE, FEMALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7"), ("f1", "f2", "f3", "f4", "f5")
# RAVDESS emotion code -> prosody relative to neutral: pitch %, range %, rate %, volume dB.
ACTING = {
    "01": (0, 0, 0, 0),  # neutral
    "02": (-5, -25, -10, -2),  # calm
    "03": (25, 60, 10, 3),  # happy
    "04": (-15, -50, -25, -5),  # sad
    "05": (10, 40, 15, 8),  # angry
    "06": (35, 10, 25, 0),  # fearful
    "07": (-10, 20, -20, 2),  # disgust
    "08": (40, 80, 5, 4),  # surprised
}
STRONG = 1.6  # intensity 02 against 01


def actors(count: int, seed: int) -> list[dict]:
    """Each actor: voice, register, tempo, own weights on each emotion's cues, own channel."""
    rng = np.random.default_rng([seed, 31337])
    out = []
    for number in range(1, count + 1):
        female = number % 2 == 0  # RAVDESS: even actors are female
        out.append(dict(
            number=number,
            voice=f"{ACCENTS[number % len(ACCENTS)]}+{rng.choice(FEMALE if female else MALE)}",
            pitch=int(np.clip(rng.normal(55 if female else 40, 12), 5, 95)),
            speed=int(np.clip(rng.normal(165, 20), 120, 220)),
            weights={code: np.exp(rng.normal(0, 0.4, 4)) for code in ACTING},
            cutoff=rng.uniform(3500, 11000),  # Hz: the microphone and its preamp
            snr_db=rng.uniform(18, 40),
        ))
    return out


def ssml(text: str, emotion: str, intensity: str, actor: dict, rng: np.random.Generator) -> str:
    scale = STRONG if intensity == "02" else 1.0
    pitch, span, rate, volume = (scale * np.array(ACTING[emotion]) * actor["weights"][emotion]
                                 + rng.normal(0, [4, 8, 4, 1]))
    return (f'<speak><prosody pitch="{pitch:+.0f}%" range="{span:+.0f}%" rate="{rate:+.0f}%" '
            f'volume="{volume:+.1f}dB">{text}</prosody></speak>')


def speak(markup: str, actor: dict, wav: Path) -> tuple[np.ndarray, int]:
    subprocess.run(["espeak-ng", "-m", "-v", actor["voice"], "-p", str(actor["pitch"]), "-s", str(actor["speed"]),
                    "-w", str(wav), markup], check=True, capture_output=True)
    samples, rate = sf.read(wav, dtype="float64")
    wav.unlink()
    return samples, rate


def recorded(samples: np.ndarray, rate: int, actor: dict, rng: np.random.Generator) -> np.ndarray:
    """At 48 kHz through the actor's chain: a one-pole low-pass and a noise floor."""
    x = soxr.resample(samples, rate, RATE)
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    x = np.fft.irfft(spectrum / np.sqrt(1 + (freqs / actor["cutoff"]) ** 2), len(x))
    rms = np.sqrt(np.mean(x ** 2)) + 1e-9
    x = x + rng.normal(0, rms * 10 ** (-actor["snr_db"] / 20), len(x))
    return 0.5 * x / max(np.abs(x).max(), 1e-9)


def clips(cast: list[dict]) -> list[tuple[dict, str, str, str, str]]:
    """(actor, emotion, intensity, statement, repetition) in RAVDESS's design: neutral at
    normal intensity only."""
    return [(actor, emotion, intensity, statement, repetition)
            for actor in cast for emotion in ACTING for intensity in ("01", "02")
            if not (emotion == "01" and intensity == "02")
            for statement in STATEMENTS for repetition in ("01", "02")]


def write(root: Path, count: int = 12, seed: int = 0) -> int:
    """Write the corpus below ``root`` (RAVDESS layout); returns the number of clips."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed: apt-get install espeak-ng")
    jobs = clips(actors(count, seed))
    with tempfile.TemporaryDirectory() as work:
        def one(job):
            actor, emotion, intensity, statement, repetition = job
            rng = np.random.default_rng([seed, actor["number"], int(emotion), int(intensity), int(statement),
                                         int(repetition)])
            name = f"03-01-{emotion}-{intensity}-{statement}-{repetition}-{actor['number']:02d}.wav"
            samples, rate = speak(ssml(STATEMENTS[statement], emotion, intensity, actor, rng), actor, Path(work) / name)
            folder = root / f"Actor_{actor['number']:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            sf.write(folder / name, recorded(samples, rate, actor, rng), RATE, subtype="PCM_16")

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, jobs))
    return len(jobs)


def in_rooms(source: Path, root: Path, seed: int = 0) -> int:
    """A copy of the corpus at ``source`` where each actor was recorded in a room of their own:
    a shoebox 3-8 m wide, its walls' absorption set by Sabine's formula for an RT60 of
    0.25-0.7 s (the image method's responses measure 0.35-0.96 s: printed), the actor 1-3 m from
    the microphone, simulated by pyroomacoustics' image method (code ser's ``augment=channel``
    shares nothing with: evaluation only). Same names, same lengths. Needs
    ``pip install pyroomacoustics``."""
    import pyroomacoustics as pra
    from scipy.signal import fftconvolve

    count = 0
    for folder in sorted(source.glob("Actor_*")):
        rng = np.random.default_rng([seed, 4711, int(folder.name[-2:])])
        size = rng.uniform([3.0, 3.0, 2.4], [8.0, 7.0, 3.5])
        absorption, order = pra.inverse_sabine(rng.uniform(0.25, 0.7), size)
        room = pra.ShoeBox(size, fs=RATE, materials=pra.Material(absorption), max_order=order)
        microphone = size * rng.uniform(0.2, 0.8, 3)
        direction = rng.normal(size=3) * [1, 1, 0.2]
        speaker = microphone + rng.uniform(1.0, 3.0) * direction / np.linalg.norm(direction)
        room.add_source(np.clip(speaker, 0.3, size - 0.3))
        room.add_microphone(microphone)
        room.compute_rir()
        response = np.asarray(room.rir[0][0])
        print(f"{folder.name}: RT60 {pra.experimental.measure_rt60(response, fs=RATE):.2f} s (measured), "
              f"{np.linalg.norm(speaker - microphone):.1f} m from the microphone", flush=True)
        (root / folder.name).mkdir(parents=True, exist_ok=True)
        for wav in sorted(folder.glob("*.wav")):
            dry, rate = sf.read(wav, dtype="float64")
            wet = fftconvolve(dry, response)[: len(dry)]
            sf.write(root / folder.name / wav.name, 0.5 * wet / max(np.abs(wet).max(), 1e-9), rate, subtype="PCM_16")
            count += 1
    return count


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--actors", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rooms-of", type=Path, help="instead: a copy of this corpus, each actor in a room of their own")
    args = parser.parse_args()
    if args.rooms_of:
        print(f"{in_rooms(args.rooms_of, args.out, args.seed)} clips written to {args.out}")
    else:
        print(f"{write(args.out, args.actors, args.seed)} clips written to {args.out}")
