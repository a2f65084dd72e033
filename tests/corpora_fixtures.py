"""Tiny corpora written in each public corpus's real layout and native sample rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ser.data.audio import write_wav
from ser.data.synthetic import PROSODY, make_voice, synthesize

# Our emotion name -> the synthetic prosody that plays it (surprise/calm/boredom borrow).
ACTED = {"anger": "ANG", "disgust": "DIS", "fear": "FEA", "happiness": "HAP", "neutral": "NEU",
         "sadness": "SAD", "surprise": "HAP", "calm": "NEU", "boredom": "SAD"}


def speech(speaker: int, emotion: str, take: int, rate: int) -> np.ndarray:
    """About a second of synthetic speech, made directly at the corpus's native rate."""
    clip = synthesize(make_voice(speaker, 0), ACTED[emotion], np.random.default_rng([speaker, take]), rate)
    return clip[:rate]


def write(path: Path, clip: np.ndarray, rate: int) -> Path:
    write_wav(path, clip, rate)
    return path


def crema_d(root: Path, actors: int = 6) -> Path:
    codes = {"anger": "ANG", "disgust": "DIS", "fear": "FEA", "happiness": "HAP", "neutral": "NEU", "sadness": "SAD"}
    for a in range(actors):
        for emotion, code in codes.items():
            for s, (sentence, level) in enumerate([("DFA", "XX"), ("IEO", "HI")]):
                write(root / "AudioWAV" / f"{1001 + a}_{sentence}_{code}_{level}.wav", speech(a, emotion, s, 16000), 16000)
    return root


def ravdess(root: Path, actors: int = 4) -> Path:
    names = ["neutral", "calm", "happiness", "sadness", "anger", "fear", "disgust", "surprise"]
    for a in range(1, actors + 1):
        for e, emotion in enumerate(names, start=1):
            for statement in (1, 2):
                name = f"03-01-{e:02d}-{1 if e == 1 else 2:02d}-{statement:02d}-01-{a:02d}.wav"
                write(root / f"Actor_{a:02d}" / name, speech(a, emotion, statement, 48000), 48000)
        # song and audio-visual files in the same tree are not part of the speech task
        write(root / f"Actor_{a:02d}" / f"03-02-05-01-01-01-{a:02d}.wav", speech(a, "anger", 9, 48000), 48000)
        write(root / f"Actor_{a:02d}" / f"01-01-05-01-01-01-{a:02d}.wav", speech(a, "anger", 8, 48000), 48000)
    return root


def emodb(root: Path, speakers=("03", "08", "09", "10", "11")) -> Path:
    letters = {"anger": "W", "boredom": "L", "disgust": "E", "fear": "A", "happiness": "F",
               "sadness": "T", "neutral": "N"}
    for k, spk in enumerate(speakers):
        for emotion, letter in letters.items():
            for text in ("a01", "b10"):
                write(root / "wav" / f"{spk}{text}{letter}a.wav", speech(k, emotion, int(text[1:]), 16000), 16000)
    return root


def tess(root: Path) -> Path:
    words = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy",
             "neutral": "neutral", "surprise": "ps", "sadness": "sad"}
    for k, spk in enumerate(("OAF", "YAF")):
        for emotion, word in words.items():
            # folder spelling differs between copies; file names are what count
            folder = f"{spk}_{'pleasant_surprised' if word == 'ps' else word}" if k else f"{spk}_{word.capitalize()}"
            for w, text in enumerate(("back", "bar", "base", "bath")):
                speaker = "OA" if (spk == "OAF" and text == "bath" and word == "neutral") else spk
                write(root / folder / f"{speaker}_{text}_{word}.wav", speech(k, emotion, w, 24414), 24414)
    return root


LAYOUTS = {"cremad": crema_d, "ravdess": ravdess, "emodb": emodb, "tess": tess}
assert set(ACTED.values()) == set(PROSODY)
