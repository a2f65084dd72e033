"""The built-in corpus: emotional-speech-like clips made by a small source-filter synthesiser.

Made as hard as acted corpora are where it matters for new speakers: speakers differ at least
as much as emotions do. Each speaker has a voice of its own (pitch register and range,
vocal-tract length, speaking rate, spectral tilt, breathiness, jitter), expresses each
emotion in a way of their own (how far, and through which cues: one shouts, another speeds
up), and is recorded through a channel of their own (microphone colour, room reverberation,
noise of their own colour and level). Emotions move the shared cues the way acted emotions
do in the literature (pitch level and range, tempo, energy and its contrast, tilt, jitter).
Sentences are fixed texts (syllable count, vowels, accent pattern) that every speaker says
in every emotion, as in CREMA-D.

The clips are written as 16-bit WAV files in CREMA-D's layout and naming
(``AudioWAV/1001_DFA_ANG_XX.wav``) and so go through exactly the loading path of a real
corpus. Generation is deterministic by seed, runs on every core and happens once per
parameter set. With ``intensities`` the generator follows CREMA-D's design, where sentence
IEO is also acted at low, medium and high intensity; ``data=synthetic_cremad`` is a corpus
of CREMA-D's size (91 speakers, 7,442 clips of about 2.5 s).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from rich.progress import track

from ser.data.audio import write_wav
from ser.data.corpora import CremaD, to_unit
from ser.errors import ConfigError

log = logging.getLogger(__name__)

SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")

# Emotion -> prosody relative to the speaker's neutral voice:
# pitch factor, pitch range factor, tempo factor, level (dB), syllable contrast,
# spectral tilt (higher = darker), jitter, breathiness.
PROSODY = {
    "NEU": dict(pitch=1.00, range=1.0, tempo=1.00, level=0.0, contrast=0.5, tilt=1.10, jitter=0.004, breath=0.05),
    "ANG": dict(pitch=1.22, range=1.5, tempo=1.12, level=6.0, contrast=0.9, tilt=0.70, jitter=0.008, breath=0.03),
    "HAP": dict(pitch=1.28, range=1.9, tempo=1.08, level=3.0, contrast=0.7, tilt=0.95, jitter=0.005, breath=0.05),
    "SAD": dict(pitch=0.90, range=0.55, tempo=0.78, level=-5.0, contrast=0.3, tilt=1.45, jitter=0.006, breath=0.15),
    "FEA": dict(pitch=1.32, range=1.1, tempo=1.20, level=-1.0, contrast=0.5, tilt=1.05, jitter=0.025, breath=0.10),
    "DIS": dict(pitch=0.94, range=1.2, tempo=0.85, level=1.0, contrast=0.8, tilt=1.25, jitter=0.015, breath=0.08),
}

# Vowel formants (Hz) of an average adult male voice: F1, F2, F3.
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010],
                   [570, 840, 2410], [300, 870, 2240], [660, 1720, 2410]], dtype=np.float64)
BANDWIDTHS = np.array([90.0, 110.0, 170.0])

# Emotion attributes of each emotion acted fully, on IEMOCAP's 1-5 scale (arousal, valence,
# dominance): the circumplex positions of the categories (Russell, 1980; Russell & Mehrabian,
# 1977, "Evidence for a three-factor theory of emotions"), neutral at the centre. A clip's
# ratings move from neutral towards these as far as its prosody departs from neutral.
ATTRIBUTE_SCALE = (1.0, 5.0)
ATTRIBUTE_PROTOTYPES = {"NEU": (3.0, 3.0, 3.0), "ANG": (4.6, 1.6, 4.2), "HAP": (4.0, 4.6, 3.6),
                        "SAD": (1.7, 1.5, 1.9), "FEA": (4.3, 1.7, 1.7), "DIS": (3.2, 1.8, 3.5)}
# CREMA-D's intensity levels: how far the prosody moves from neutral (XX = unspecified).
INTENSITY = {"XX": 1.0, "LO": 0.5, "MD": 0.8, "HI": 1.2}
INTENSITY_SENTENCE = "IEO"  # the one sentence CREMA-D records at every level
# Bumped whenever the generator changes what it writes: a new folder, never a stale corpus.
# v2: speakers differ as much as emotions do (own expression, own channel), fixed sentences.
GENERATOR = "v2"


@dataclass(frozen=True)
class SyntheticSpec:
    num_speakers: int = 16
    num_sentences: int = 10
    seed: int = 0
    sample_rate: int = 16000
    variability: float = 1.0  # scales utterance-to-utterance prosody noise (difficulty)
    syllables: tuple[int, int] = (5, 9)  # fewest and most syllables of an utterance
    intensities: bool = False  # also speak IEO at LO/MD/HI, as CREMA-D does
    num_clips: int | None = None  # keep this many clips, dropped evenly (CREMA-D lacks a few)

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Voice:
    """A speaker: voice, way of expressing emotion, and recording channel."""

    f0: float  # pitch register (Hz)
    pitch_range: float  # semitones of a neutral accent: monotone to lively
    formant_scale: float  # shorter vocal tract: higher formants
    rate: float  # syllables per second
    tilt: float
    breath: float
    jitter: float
    expressiveness: float  # how far this speaker's emotions move from neutral
    expression: dict  # emotion -> cue -> this speaker's weight on the shared departure
    eq_db: tuple[float, ...]  # microphone colour: gains (dB) at log-spaced frequencies
    reverb_s: float  # the room's decay time (RT60)
    reverb_mix: float
    snr_db: float  # the room's mean noise level
    noise_colour: float  # noise spectrum slope: -1 brown-ish ... 0 white ... 1 blue-ish


def make_voice(speaker: int, seed: int) -> Voice:
    rng = np.random.default_rng([seed, speaker, 7919])
    female = speaker % 2 == 1
    cues = ("pitch", "range", "tempo", "level", "contrast", "tilt", "jitter", "breath")
    return Voice(
        f0=float(np.clip(rng.normal(205.0, 30.0) if female else rng.normal(118.0, 20.0), 70, 320)),
        pitch_range=float(np.clip(rng.normal(2.2, 0.7), 0.8, 4.5)),
        formant_scale=rng.normal(1.15, 0.07) if female else rng.normal(1.0, 0.06),
        rate=float(np.clip(rng.normal(4.5, 0.8), 2.8, 6.5)),
        tilt=rng.normal(0.0, 0.3),
        breath=abs(rng.normal(0.05, 0.05)),
        jitter=abs(rng.normal(0.004, 0.003)),
        expressiveness=rng.uniform(0.45, 1.3),
        expression={e: {c: float(np.exp(rng.normal(0, 0.5))) for c in cues} for e in PROSODY},
        eq_db=tuple(rng.normal(0, 2.5, 6)),
        reverb_s=rng.uniform(0.05, 0.6),
        reverb_mix=rng.uniform(0.05, 0.35),
        snr_db=rng.uniform(12, 35),
        noise_colour=rng.uniform(-1, 1),
    )


@dataclass(frozen=True)
class Sentence:
    """A fixed text: what every speaker says in every emotion."""

    vowels: np.ndarray  # [syllables] indices into VOWELS
    accents: np.ndarray  # [syllables] the sentence's accent pattern


def make_sentence(index: int, syllables: tuple[int, int], seed: int = 0) -> Sentence:
    rng = np.random.default_rng([seed, index, 104729])
    n = int(rng.integers(syllables[0], syllables[1] + 1))
    return Sentence(rng.integers(0, len(VOWELS), n), rng.normal(0, 1, n))


def synthesize(voice: Voice, emotion: str, rng: np.random.Generator, sample_rate: int,
               variability: float = 1.0, intensity: float = 1.0,
               syllables: tuple[int, int] = (5, 9), sentence: Sentence | None = None) -> np.ndarray:
    """One utterance in ``emotion`` spoken by ``voice`` and recorded through its channel:
    ``sentence`` (or a random one of ``syllables``, an inclusive range); ``intensity`` scales
    how far the prosody departs from neutral."""
    neutral = PROSODY["NEU"]
    weights = voice.expression[emotion]
    depart = intensity * voice.expressiveness
    p = {k: neutral[k] + depart * weights[k] * (value - neutral[k]) for k, value in PROSODY[emotion].items()}
    p["pitch"], p["range"], p["tempo"] = max(p["pitch"], 0.6), max(p["range"], 0.2), max(p["tempo"], 0.5)
    v = variability
    pitch = voice.f0 * p["pitch"] * np.exp(rng.normal(0, 0.08 * v))
    semitone_range = voice.pitch_range * p["range"] * np.exp(rng.normal(0, 0.25 * v))
    rate = voice.rate * p["tempo"] * np.exp(rng.normal(0, 0.08 * v))
    tilt = p["tilt"] + voice.tilt + rng.normal(0, 0.12 * v)
    jitter = max(p["jitter"], 0.0) * np.exp(rng.normal(0, 0.3 * v)) + voice.jitter
    contrast = np.clip(p["contrast"] + rng.normal(0, 0.12 * v), 0.05, 1.0)
    breath = max(voice.breath + p["breath"], 0.0)

    if sentence is None:
        sentence = Sentence(rng.integers(0, len(VOWELS), int(rng.integers(syllables[0], syllables[1] + 1))),
                            rng.normal(0, 1, syllables[1]))
    n_syll = len(sentence.vowels)
    syll_len = sample_rate / rate
    n = int(n_syll * syll_len + 0.25 * sample_rate)
    t = np.arange(n) / sample_rate
    hop = 80  # control rate for slowly varying parameters (5 ms at 16 kHz)
    n_ctl = n // hop + 2
    tc = np.arange(n_ctl) * hop / sample_rate

    # Pitch contour: declination + the sentence's accents (each spoken a little differently)
    # + slow wander, in semitones.
    onsets = 0.12 + np.arange(n_syll) * syll_len / sample_rate
    accents = 0.7 * sentence.accents[:n_syll] + rng.normal(0, 0.7, n_syll)
    contour = -0.4 * tc / tc[-1] + sum(a * np.exp(-((tc - o) * rate * 1.6) ** 2) for a, o in zip(accents, onsets))
    contour = contour + 0.3 * np.sin(2 * np.pi * rng.uniform(0.3, 1.2) * tc + rng.uniform(0, 6.3))
    f0_ctl = pitch * 2 ** (semitone_range * contour / 12)
    f0 = np.interp(t, tc, f0_ctl)
    f0 = f0 * (1 + jitter * np.interp(t, tc, rng.normal(0, 1, n_ctl)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate

    # Syllable envelope with stress contrast; vowel formants move from syllable to syllable.
    syll_index = np.clip(((tc - 0.12) * rate).astype(int), 0, n_syll - 1)
    within = ((tc - 0.12) * rate) % 1.0
    stress = 1.0 + contrast * rng.uniform(-1, 1, n_syll)
    env_ctl = np.where(tc >= 0.12, np.sin(np.pi * within) ** 1.5 * stress[syll_index], 0.0)
    env_ctl[tc > onsets[-1] + syll_len / sample_rate] = 0.0
    vowels = VOWELS[sentence.vowels] * voice.formant_scale * np.exp(rng.normal(0, 0.03 * v, (n_syll, 3)))
    formants = vowels[syll_index]  # [n_ctl, 3]

    # Harmonic source shaped by the formant envelope (evaluated at the control rate).
    n_harm = int(min(6000, sample_rate / 2) / (pitch * 0.8))  # little energy above 6 kHz
    k = np.arange(1, n_harm + 1)[:, None]
    freq = k * f0_ctl[None, :]
    resonance = sum(1.0 / (1.0 + ((freq - formants[None, :, j]) / (BANDWIDTHS[j] / 2)) ** 2)
                    for j in range(3))
    amps = (k ** -tilt) * (0.15 + resonance) * (freq < sample_rate / 2 - 200)
    voiced = np.zeros(n)
    for h in range(n_harm):
        voiced += np.interp(t, tc, amps[h]) * np.sin((h + 1) * phase)

    noise = rng.normal(0, 1, n)
    aspiration = np.convolve(noise, [1, -0.9], mode="same")  # high-passed breath noise
    env = np.interp(t, tc, env_ctl)
    speech = env * (voiced + 0.4 * breath * aspiration)
    speech *= 10 ** (p["level"] / 20)
    return recorded(speech, voice, rng, sample_rate)


def recorded(speech: np.ndarray, voice: Voice, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """``speech`` through the speaker's channel: microphone colour, room, noise, level."""
    n = len(speech)
    rms = np.sqrt(np.mean(speech ** 2)) + 1e-9
    decay = np.arange(int(voice.reverb_s * sample_rate)) / sample_rate
    room = rng.normal(0, 1, len(decay)) * 10 ** (-3 * decay / voice.reverb_s)  # -60 dB at RT60
    room = room / (np.sqrt(np.sum(room ** 2)) + 1e-9)
    size = 1 << int(np.ceil(np.log2(n + len(room))))
    spectrum = np.fft.rfft(speech, size)
    freqs = np.fft.rfftfreq(size, 1 / sample_rate)
    anchors = np.geomspace(100, sample_rate / 2, len(voice.eq_db))
    eq = 10 ** (np.interp(np.log(np.maximum(freqs, 1)), np.log(anchors), voice.eq_db) / 20)
    dry = np.fft.irfft(spectrum * eq, size)[:n]
    wet = np.fft.irfft(spectrum * eq * np.fft.rfft(room, size), size)[:n]
    out = (1 - voice.reverb_mix) * dry + voice.reverb_mix * wet * (rms / (np.sqrt(np.mean(wet ** 2)) + 1e-9))
    white = np.fft.rfft(rng.normal(0, 1, n))
    tint = np.maximum(np.fft.rfftfreq(n, 1 / sample_rate), 50) ** (voice.noise_colour / 2)
    hiss = np.fft.irfft(white * tint, n)
    snr_db = voice.snr_db + rng.normal(0, 3)
    out_rms = np.sqrt(np.mean(out ** 2)) + 1e-9
    out = out + hiss * out_rms * 10 ** (-snr_db / 20) / (np.sqrt(np.mean(hiss ** 2)) + 1e-9)
    gain_db = rng.uniform(-8, 4)
    out *= 0.07 * 10 ** (gain_db / 20) / (np.sqrt(np.mean(out ** 2)) + 1e-9)
    return out.astype(np.float32)


class Synthetic(CremaD):
    """The built-in corpus, generated on first use below ``data.root`` (CREMA-D naming)."""

    name = "synthetic"
    homepage = "the built-in generator (nothing to download)"
    generated = True  # prepare() writes it: nothing to find before then
    attribute_scale = ATTRIBUTE_SCALE

    def __init__(self, num_speakers: int = 16, num_sentences: int = 10, seed: int = 0,
                 sample_rate: int = 16000, variability: float = 1.0, syllables=(5, 9),
                 intensities: bool = False, num_clips: int | None = None):
        if num_speakers < 3:
            raise ConfigError(f"data.corpus.num_speakers={num_speakers}: the synthetic corpus needs at least 3 speakers.")
        low, high = (int(n) for n in syllables)
        if not 1 <= low <= high:
            raise ConfigError(f"data.corpus.syllables={list(syllables)} is not valid: use [fewest, most] with 1 <= fewest <= most.")
        self.spec = SyntheticSpec(num_speakers, min(num_sentences, len(SENTENCES)), seed,
                                  sample_rate, variability, (low, high), intensities, num_clips)

    def folder(self, root) -> Path:
        return Path(root).expanduser() / f"{GENERATOR}-{self.spec.digest()}"

    def sources(self, root):
        return [(self, self.folder(root))]

    def prepare(self, root) -> None:
        target = self.folder(root)
        if (target / "spec.json").is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Build in a temporary folder and rename it into place, so that parallel runs of a
        # multirun never see a half-written corpus.
        tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=target.parent))
        count = self._generate(tmp / "AudioWAV")
        (tmp / "spec.json").write_text(json.dumps(asdict(self.spec), indent=1))
        try:
            os.rename(tmp, target)
            log.info("Synthetic corpus: %d clips written to %s", count, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)

    def _generate(self, out: Path) -> int:
        out.mkdir(parents=True)
        jobs = [(self.spec, out, *u) for u in self.utterances()]
        with contextlib.ExitStack() as stack:
            if multiprocessing.current_process().daemon:  # daemonic processes may not have children
                done = map(_write_utterance, jobs)
            else:  # fork on Linux: the workers need only numpy and soundfile, and start at once
                context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
                pool = stack.enter_context(ProcessPoolExecutor(os.cpu_count() or 1, mp_context=context))
                done = pool.map(_write_utterance, jobs, chunksize=16)
            for _ in track(done, total=len(jobs), description="Synthesising the built-in corpus", transient=True):
                pass
        return len(jobs)

    def scan(self, root):
        """CREMA-D's parse, and each clip's attributes from its emotion and how strongly it was
        acted: its level times its speaker's expressiveness, the departure from neutral that the
        generator applied to its prosody (:func:`attributes_of`)."""
        clips, skipped = super().scan(root)
        return [replace(c, attributes=self.attributes_of(Path(c.path))) for c in clips], skipped

    def attributes_of(self, path: Path) -> tuple[float, float, float]:
        speaker, _sentence, emotion, level = path.stem.split("_")
        depart = INTENSITY[level] * make_voice(int(speaker) - 1001, self.spec.seed).expressiveness
        neutral, full = np.array(ATTRIBUTE_PROTOTYPES["NEU"]), np.array(ATTRIBUTE_PROTOTYPES[emotion])
        ratings = np.clip(neutral + depart * (full - neutral), *ATTRIBUTE_SCALE)
        return to_unit(ratings, ATTRIBUTE_SCALE)

    def utterances(self) -> list[tuple[int, str, str, str]]:
        """(speaker, emotion, sentence, level) of every clip, in CREMA-D's design."""
        spec = self.spec
        items = []
        for speaker in range(spec.num_speakers):
            for emotion in PROSODY:
                for sentence in SENTENCES[: spec.num_sentences]:
                    graded = spec.intensities and sentence == INTENSITY_SENTENCE and emotion != "NEU"
                    items += [(speaker, emotion, sentence, level)
                              for level in (("LO", "MD", "HI") if graded else ("XX",))]
        if spec.num_clips is not None and spec.num_clips < len(items):
            keep = np.linspace(0, len(items) - 1, spec.num_clips).round().astype(int)
            items = [items[i] for i in keep]
        return items


def _write_utterance(job) -> None:
    spec, out, speaker, emotion, sentence, level = job
    e, s = list(PROSODY).index(emotion), SENTENCES.index(sentence)
    seeds = [spec.seed, speaker, e, s] + ([] if level == "XX" else [list(INTENSITY).index(level)])
    clip = synthesize(make_voice(speaker, spec.seed), emotion, np.random.default_rng(seeds),
                      spec.sample_rate, spec.variability, INTENSITY[level], spec.syllables,
                      make_sentence(s, spec.syllables, spec.seed))
    write_wav(out / f"{1001 + speaker}_{sentence}_{emotion}_{level}.wav", clip, spec.sample_rate)
