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


IEMOCAP_CODES = ["neu", "hap", "exc", "ang", "sad", "fru", "xxx", "neu", "ang", "sad"]
IEMOCAP_EMOTION = {"neu": "neutral", "hap": "happiness", "exc": "happiness", "ang": "anger", "sad": "sadness",
                   "fru": "anger", "xxx": "neutral"}


def iemocap_vad(session: int, index: int) -> tuple[float, float, float]:
    """The [V, A, D] ratings a tiny IEMOCAP's utterance gets (1-5, in half steps)."""
    return 1 + (session + index) % 9 / 2, 1 + (2 * session + index) % 9 / 2, 1 + (session + 3 * index) % 9 / 2


def iemocap(root: Path) -> Path:
    """IEMOCAP_full_release in miniature: 5 sessions, an improvised and a scripted dialogue each,
    utterances of both actors (``Ses01F_impro01_M000``: the male actor speaks in a dialogue named
    after the female one), the header and annotator lines of EmoEvaluation files, and one of
    each oddity in Session5: a label whose wav is missing, a wav with no label, an unknown
    code, a rating outside 1-5."""
    for session in range(1, 6):
        base = root / f"Session{session}"
        for dialog in (f"Ses{session:02d}F_impro01", f"Ses{session:02d}M_script01_1"):
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for index, code in enumerate(IEMOCAP_CODES):
                letter = "FM"[index % 2]
                utterance = f"{dialog}_{letter}{index:03d}"
                speaker = 2 * session + (letter == "M")
                v, a, d = iemocap_vad(session, index)
                write(base / "sentences" / "wav" / dialog / f"{utterance}.wav",
                      speech(speaker, IEMOCAP_EMOTION[code], index, 16000), 16000)
                lines += [f"[{index * 2.5:.4f} - {index * 2.5 + 2:.4f}]\t{utterance}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]",
                          "C-E1:\tNeutral state;\t()", "A-E2:\tval 3; act 2; dom  3;\t()", ""]
            if session == 5 and "impro" in dialog:
                lines += [f"[90.0000 - 91.0000]\t{dialog}_F098\tneu\t[3.0000, 3.0000, 3.0000]",  # no wav
                          f"[92.0000 - 93.0000]\t{dialog}_M097\tzzz\t[3.0000, 3.0000, 3.0000]",  # unknown code
                          f"[94.0000 - 95.0000]\t{dialog}_F096\tang\t[3.0000, 6.0000, 3.0000]"]  # outside 1-5
                for name in (f"{dialog}_M097", f"{dialog}_F096", f"{dialog}_M095"):  # M095: a wav with no label
                    write(base / "sentences" / "wav" / dialog / f"{name}.wav", speech(1, "anger", 1, 16000), 16000)
            (base / "dialog" / "EmoEvaluation" / "Categorical").mkdir(parents=True, exist_ok=True)
            (base / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
            (base / "dialog" / "EmoEvaluation" / "Categorical" / f"{dialog}_e1_cat.txt").write_text(
                f"{dialog}_F000 :Neutral state; ()\n")
    return root


MSP_CODES = {"A": "anger", "S": "sadness", "H": "happiness", "U": "happiness", "F": "fear", "D": "disgust",
             "C": "anger", "N": "neutral", "X": "neutral", "O": "sadness"}


def msp_podcast(root: Path) -> list[dict]:
    """MSP-Podcast in miniature: Audios/ and Labels/labels_consensus.csv with the release's
    columns, every category code (X and O too), Unknown speakers, every partition, and one of
    each oddity: a row whose wav is missing, a wav with no row, an unknown partition, a rating
    outside 1-7. Returns the rows written (the well-formed ones)."""
    rows = []
    partitions = ["Train"] * 6 + ["Development"] * 2 + ["Test1"] * 2 + ["Test2"]
    for p, partition in enumerate(partitions):
        speaker = "Unknown" if p % 4 == 1 else str(100 + p)  # Unknown: many speakers, none named
        for c, code in enumerate(MSP_CODES):
            name = f"MSP-PODCAST_{p + 1:04d}_{c + 1:04d}.wav"
            write(root / "Audios" / name, speech(p, MSP_CODES[code], c, 16000), 16000)
            rows.append({"FileName": name, "EmoClass": code, "EmoAct": f"{1 + (p + c) % 13 / 2:.1f}",
                         "EmoVal": f"{1 + (2 * p + c) % 13 / 2:.1f}", "EmoDom": f"{1 + (p + 3 * c) % 13 / 2:.1f}",
                         "SpkrID": speaker, "Gender": "Female" if p % 2 else "Male", "Split_Set": partition})
    odd = [dict(rows[0], FileName="MSP-PODCAST_0999_0001.wav"),  # no wav
           dict(rows[0], FileName="MSP-PODCAST_0998_0001.wav", Split_Set="Test9"),  # unknown partition
           dict(rows[0], FileName="MSP-PODCAST_0997_0001.wav", EmoAct="7.5")]  # outside 1-7
    for name in ("MSP-PODCAST_0998_0001.wav", "MSP-PODCAST_0997_0001.wav", "MSP-PODCAST_0996_0001.wav"):
        write(root / "Audios" / name, speech(1, "anger", 1, 16000), 16000)  # 0996: a wav with no row
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    with open(root / "Labels" / "labels_consensus.csv", "w", newline="") as handle:
        import csv

        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows + odd)
    return rows


def damaged_folder(root: Path) -> tuple[list[str], list[str]]:
    """A folder as users hand ser-predict: good clips beside damaged and odd files. Returns the
    names every reader must answer and the names it must skip, each with a reason."""
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    good = write(root / "good.wav", speech(0, "anger", 0, 16000), 16000)
    rng = np.random.default_rng(0)
    sf.write(root / "eight_channels_96k_float.wav", np.stack([speech(1, "fear", 1, 96000)] * 8, axis=1), 96000,
             subtype="FLOAT")
    sf.write(root / "short.flac", speech(2, "sadness", 2, 16000)[:800], 16000)  # 0.05 s
    sf.write(root / "stereo.ogg", np.stack([speech(3, "happiness", 3, 22050)] * 2, axis=1), 22050)
    (root / "empty.wav").write_bytes(b"")
    (root / "truncated_header.wav").write_bytes(good.read_bytes()[:30])
    (root / "random_bytes.wav").write_bytes(rng.integers(0, 256, 64000, dtype=np.uint8).tobytes())
    (root / "notes.txt").write_text("not audio, and not named as audio: not an input")
    return (["eight_channels_96k_float.wav", "good.wav", "short.flac", "stereo.ogg"],
            ["empty.wav", "random_bytes.wav", "truncated_header.wav"])


def assert_answered_and_skipped(proc, answered: list[str], skipped: list[str]) -> None:
    """ser-predict's output on :func:`damaged_folder`: one JSON line per readable file, each bad
    file named with its reason on stderr, no traceback, and the exit status of a partial answer."""
    import json

    assert proc.returncode == 3, proc.stderr[-3000:]
    assert sorted(json.loads(line)["path"].rsplit("/", 1)[-1] for line in proc.stdout.splitlines()) == answered
    named = [line for line in proc.stderr.splitlines() if line.startswith("skipped ")]
    assert sorted(line.split(":")[0].rsplit("/", 1)[-1] for line in named) == skipped
    assert all(len(line.split(": ", 1)[1]) > 5 for line in named)  # with its reason
    assert "Traceback" not in proc.stderr and "notes.txt" not in proc.stderr + proc.stdout
    assert f"{len(skipped)} input file(s) could not be read" in proc.stderr
