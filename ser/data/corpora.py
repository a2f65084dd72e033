"""One small parser class per corpus: how a file below ``data.root`` becomes speaker + emotion.

Parsers follow each corpus's *published* naming scheme and look at file names only (folder
spelling differs between copies). ``parse`` returns ``None`` for files that belong to the
corpus but not to speech emotion (RAVDESS song, say) and raises :class:`UnknownLabel` for
names that do not follow the scheme, which the DataModule lists in a warning.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from ser.errors import UserError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Clip:
    path: str  # absolute
    speaker: str
    emotion: str


class UnknownLabel(ValueError):
    """The file name does not follow the corpus naming scheme."""


class MissingCorpus(UserError):
    """``data.root`` is missing or holds no audio; the message says where to get the corpus."""


class Corpus:
    """Base parser: discovers audio files recursively and maps each name to a :class:`Clip`."""

    name = "corpus"
    homepage = ""
    labels: dict[str, str] = {}
    generated = False  # True: prepare() makes it, so there is nothing to find beforehand

    def parse(self, path: Path) -> tuple[str, str] | None:
        raise NotImplementedError

    def prepare(self, root: Path) -> None:
        """Make the corpus available below ``root``; real corpora can only be downloaded by you."""

    def check_available(self, root) -> None:
        """Raise :class:`MissingCorpus` now, before any work, if the corpus folder is missing."""
        if root is None or self.generated:  # nothing given, or nothing to find before prepare()
            return
        if not Path(root).expanduser().is_dir():
            raise MissingCorpus(self.missing_message(Path(root).expanduser()))

    def sources(self, root) -> list[tuple[Corpus, Path]]:
        """(parser, root) pairs that make up this corpus; several for :class:`Multi`."""
        return [(self, Path(root).expanduser())]

    def label(self, code: str) -> str:
        try:
            return self.labels[code]
        except KeyError:
            raise UnknownLabel(f"unknown emotion code {code!r}") from None

    def scan(self, root) -> tuple[list[Clip], list[tuple[str, str]]]:
        """Return the clips below ``root`` and the (path, reason) pairs that were skipped."""
        clips, skipped = [], []
        for parser, base in self.sources(root):
            for path in audio_files(base, parser):
                try:
                    parsed = parser.parse(path)
                except UnknownLabel as err:
                    skipped.append((str(path), str(err)))
                    continue
                if parsed is not None:
                    speaker, emotion = parsed
                    clips.append(Clip(str(path), parser.speaker_id(speaker), emotion))
        return clips, skipped

    def speaker_id(self, speaker: str) -> str:
        return speaker

    def missing_message(self, root: Path) -> str:
        return (
            f"No {self.name} audio found under data.root={str(root)!r}. Download the corpus "
            f"from {self.homepage} , unpack it anywhere and pass its folder as "
            f"data.root=/path/to/it (the files are found recursively)."
        )


def audio_files(root: Path, corpus: Corpus) -> list[Path]:
    if not root.is_dir():
        raise MissingCorpus(corpus.missing_message(root))
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise MissingCorpus(corpus.missing_message(root))
    return files


class CremaD(Corpus):
    """``AudioWAV/1001_DFA_ANG_XX.wav`` = actor_sentence_emotion_level; 91 actors, 16 kHz."""

    name = "CREMA-D"
    homepage = "https://github.com/CheyneyComputerScience/CREMA-D (or Kaggle: ejlok1/cremad)"
    labels = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness",
              "NEU": "neutral", "SAD": "sadness"}
    pattern = re.compile(r"^(\d+)_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$", re.IGNORECASE)

    def parse(self, path):
        match = self.pattern.match(path.stem)
        if not match:
            raise UnknownLabel("name is not actor_sentence_emotion_level")
        actor, _sentence, emotion, _level = match.groups()
        return actor, self.label(emotion.upper())


class Ravdess(Corpus):
    """``Actor_01/03-01-05-01-01-01-01.wav`` = modality-channel-emotion-intensity-statement-
    repetition-actor; 24 actors, 48 kHz. Only audio-only (03) speech (channel 01) is used."""

    name = "RAVDESS"
    homepage = "https://zenodo.org/record/1188976 (Audio_Speech_Actors_01-24.zip)"
    labels = {"01": "neutral", "02": "calm", "03": "happiness", "04": "sadness",
              "05": "anger", "06": "fear", "07": "disgust", "08": "surprise"}
    pattern = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")

    def parse(self, path):
        match = self.pattern.match(path.stem)
        if not match:
            raise UnknownLabel("name is not seven two-digit fields")
        modality, channel, emotion, *_, actor = match.groups()
        if modality != "03" or channel != "01":
            return None  # video or song: not part of the speech task
        return actor, self.label(emotion)


class EmoDB(Corpus):
    """``wav/03a01Fa.wav`` = speaker(2) text(3) emotion(1) version(1); 10 speakers, 16 kHz."""

    name = "EmoDB (Berlin Database of Emotional Speech)"
    homepage = "http://emodb.bilderbar.info/ (or Kaggle: piyushagni5/berlin-database-of-emotional-speech-emodb)"
    labels = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
              "T": "sadness", "N": "neutral"}
    pattern = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z])$")

    def parse(self, path):
        match = self.pattern.match(path.stem)
        if not match:
            raise UnknownLabel("name is not speaker(2) text(3) emotion(1) version(1)")
        speaker, _text, emotion, _version = match.groups()
        return speaker, self.label(emotion)


class Tess(Corpus):
    """``OAF_angry/OAF_back_angry.wav``; the label is the last ``_`` field of the file name
    (``ps`` = pleasant surprise); speakers OAF and YAF, 24414 Hz."""

    name = "TESS (Toronto emotional speech set)"
    homepage = "https://tspace.library.utoronto.ca/handle/1807/24487 (or Kaggle: ejlok1/toronto-emotional-speech-set-tess)"
    labels = {"angry": "anger", "anger": "anger", "disgust": "disgust", "fear": "fear",
              "fearful": "fear", "happy": "happiness", "neutral": "neutral", "ps": "surprise",
              "surprise": "surprise", "surprised": "surprise", "sad": "sadness"}

    def parse(self, path):
        fields = path.stem.split("_")
        if len(fields) < 3:
            raise UnknownLabel("name is not SPEAKER_word_emotion")
        return fields[0], self.label(fields[-1].lower())

    def speaker_id(self, speaker):
        # Copies contain slips such as "OA_bite_neutral.wav": the first letter is the speaker.
        return {"O": "OAF", "Y": "YAF"}.get(speaker[:1].upper(), speaker.upper())


class Folder(Corpus):
    """Your own data: a CSV manifest (columns path, emotion, speaker; paths relative to the
    CSV) or, with no manifest, a folder-per-emotion tree ``ROOT/<emotion>/<file>`` whose
    speaker is the first match of ``speaker_pattern`` in the file name."""

    name = "folder corpus"
    homepage = "your own recordings (see the README, section 'Your own data')"
    labels = {
        **{e: e for e in ("anger", "disgust", "fear", "happiness", "neutral", "sadness",
                          "surprise", "calm", "boredom")},
        "angry": "anger", "happy": "happiness", "sad": "sadness", "fearful": "fear",
        "surprised": "surprise", "bored": "boredom", "disgusted": "disgust",
    }

    def __init__(self, manifest: str | None = None, speaker_pattern: str = r"^[^_\-. ]+"):
        self.manifest = manifest
        self.speaker_pattern = re.compile(speaker_pattern)

    def check_available(self, root) -> None:
        if self.manifest is None:
            return super().check_available(root)
        manifest = Path(self.manifest).expanduser()
        if not manifest.is_file():
            raise MissingCorpus(f"data.corpus.manifest={str(manifest)!r} does not exist.")

    def scan(self, root):
        if self.manifest is None:
            return super().scan(root)
        self.check_available(root)
        manifest = Path(self.manifest).expanduser()
        clips, skipped = [], []
        with open(manifest, newline="") as handle:
            for row in csv.DictReader(handle):
                path = (manifest.parent / row["path"]).resolve()
                try:
                    clips.append(Clip(str(path), row["speaker"], self.label(row["emotion"].lower())))
                except UnknownLabel as err:
                    skipped.append((str(path), str(err)))
        return clips, skipped

    def parse(self, path):
        match = self.speaker_pattern.search(path.name)
        if not match:
            raise UnknownLabel("no speaker in the file name (see data.corpus.speaker_pattern)")
        return match.group(0), self.label(path.parent.name.lower())


class Multi(Corpus):
    """Several corpora at once, in the shared vocabulary; speakers are prefixed by corpus."""

    name = "multi-corpus"

    def __init__(self, parts: dict):
        # parts: {name: {"corpus": Corpus, "root": path}}
        self.parts = {name: (part["corpus"], Path(part["root"]).expanduser())
                      for name, part in parts.items()}

    def prepare(self, root):
        for corpus, part_root in self.parts.values():
            corpus.prepare(part_root)

    def check_available(self, root) -> None:
        missing = []
        for corpus, part_root in self.parts.values():
            try:
                corpus.check_available(part_root)
            except MissingCorpus as err:
                missing.append(str(err))
        if missing:  # every missing part in one paragraph
            raise MissingCorpus(" ".join(missing))

    def sources(self, root):
        return [(_Prefixed(corpus, name), part_root) for name, (corpus, part_root) in self.parts.items()]


class _Prefixed(Corpus):
    """Wraps a parser so that speaker ids stay distinct across corpora."""

    def __init__(self, inner: Corpus, prefix: str):
        self.inner, self.prefix = inner, prefix
        self.name, self.homepage, self.generated = inner.name, inner.homepage, inner.generated

    def parse(self, path):
        return self.inner.parse(path)

    def speaker_id(self, speaker):
        return f"{self.prefix}/{self.inner.speaker_id(speaker)}"
