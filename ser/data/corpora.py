"""One small parser class per corpus: how a file below ``data.root`` becomes speaker + emotion.

Parsers follow each corpus's *published* naming scheme and look at file names only (folder
spelling differs between copies). ``parse`` returns ``None`` for files that belong to the
corpus but not to speech emotion (RAVDESS song, say) and raises :class:`UnknownLabel` for
names that do not follow the scheme, which the DataModule lists in a warning.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ser.data.splits import by_partition, leave_one_session_out
from ser.errors import ConfigError, UserError, not_one_of

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Clip:
    path: str  # absolute
    speaker: str  # the person speaking; for an unknown one a name of the clip's own (never pooled)
    emotion: str | None  # None: the corpus has no agreed category for it (IEMOCAP xxx, MSP-Podcast X)
    attributes: tuple[float, float, float] | None = None  # arousal, valence, dominance in [0, 1]
    session: str | None = None  # the corpus's own protocol unit: an IEMOCAP session, an MSP-Podcast partition
    speaker_known: bool = True  # False: per-speaker statistics cannot be gathered for it


def to_unit(values, scale: tuple[float, float]) -> tuple[float, ...]:
    """Attribute ratings on a corpus's scale (IEMOCAP 1-5, MSP-Podcast 1-7) -> [0, 1]; a
    rating outside the scale is an :class:`UnknownLabel`."""
    low, high = scale
    try:
        values = tuple(float(v) for v in values)
    except ValueError:
        raise UnknownLabel(f"attribute ratings {list(values)} are not numbers") from None
    if not all(low <= v <= high for v in values):
        raise UnknownLabel(f"attribute ratings {list(values)} outside the corpus's scale {low:g}-{high:g}")
    return tuple((v - low) / (high - low) for v in values)


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
    attribute_scale: tuple[float, float] | None = None  # the scale its attribute ratings use, if any

    def check_protocol(self, fold: int) -> None:
        """What ``data.split=protocol`` with ``data.fold`` can be checked for before the corpus
        is read (train.py's pre-flight): that the corpus has a protocol, and such a fold."""
        self.protocol_split([], fold=fold, val_fraction=0.1, seed=0)

    def protocol_split(self, clips: list[Clip], *, fold: int, val_fraction: float, seed: int) -> list[str]:
        """``data.split=protocol``: the corpus's published evaluation protocol."""
        raise ConfigError(f"data.split=protocol: {self.name} has no published protocol of its own here; "
                          "use data.split=speaker or kfold (IEMOCAP and MSP-Podcast have one).")

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
    CSV; optionally arousal, valence, dominance rated on ``attribute_scale``, and an emotion
    left empty where a clip has none) or, with no manifest, a folder-per-emotion tree
    ``ROOT/<emotion>/<file>`` whose speaker is the first match of ``speaker_pattern`` in the
    file name."""

    name = "folder corpus"
    homepage = "your own recordings (see the README, section 'Your own data')"
    labels = {
        **{e: e for e in ("anger", "disgust", "fear", "happiness", "neutral", "sadness",
                          "surprise", "calm", "boredom")},
        "angry": "anger", "happy": "happiness", "sad": "sadness", "fearful": "fear",
        "surprised": "surprise", "bored": "boredom", "disgusted": "disgust",
    }

    def __init__(self, manifest: str | None = None, speaker_pattern: str = r"^[^_\-. ]+",
                 attribute_scale: tuple[float, float] = (1.0, 5.0)):
        self.manifest = manifest
        self.speaker_pattern = re.compile(speaker_pattern)
        self.attribute_scale = tuple(float(v) for v in attribute_scale)

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
                    clips.append(self._row(path, row))
                except UnknownLabel as err:
                    skipped.append((str(path), str(err)))
        return clips, skipped

    def _row(self, path: Path, row: dict) -> Clip:
        emotion = (row.get("emotion") or "").strip().lower()
        ratings = [row.get(name, "").strip() for name in ("arousal", "valence", "dominance")]
        attributes = to_unit(ratings, self.attribute_scale) if all(ratings) else None
        if not emotion and attributes is None:
            raise UnknownLabel("neither an emotion nor arousal, valence and dominance")
        return Clip(str(path), row["speaker"], self.label(emotion) if emotion else None, attributes)

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

    def scan(self, root):
        """Every part's clips, each speaker prefixed by its part's name (speaker ids stay
        distinct across corpora); a part's sessions are prefixed alike."""
        clips, skipped = [], []
        for name, (corpus, part_root) in self.parts.items():
            found, passed_over = corpus.scan(part_root)
            clips += [replace(c, speaker=f"{name}/{c.speaker}", session=c.session and f"{name}/{c.session}")
                      for c in found]
            skipped += passed_over
        return clips, skipped


class Iemocap(Corpus):
    """IEMOCAP (USC SAIL), as distributed in ``IEMOCAP_full_release``: five sessions, each two
    actors (one female, one male) in improvised and scripted dialogues, 16 kHz.

    Audio: ``Session{N}/sentences/wav/<dialog>/<utterance>.wav``. Labels:
    ``Session{N}/dialog/EmoEvaluation/<dialog>.txt``, one line per utterance
    ``[start - end]<TAB>utterance<TAB>code<TAB>[V, A, D]`` (the annotators' lines follow it and
    are not read), as the corpus's own header says: ``% [START_TIME - END_TIME] TURN_NAME EMOTION
    [V, A, D]``; valence, activation and dominance are rated 1-5 (Busso et al., 2008, "IEMOCAP:
    interactive emotional dyadic motion capture database", Lang. Resources & Evaluation 42).

    The speaker is the person speaking: the session and the F/M letter of the utterance's own
    id (``Ses01F_impro01_M003`` is session 1's male actor). The ``Ses01F`` prefix names the
    actor wearing the motion-capture markers in that dialogue, not the speaker.

    The field's protocol (``data.split=protocol``): leave one session out, 5 folds (fold k tests
    Session k+1), four classes with excitement merged into happiness (neutral, happiness,
    anger, sadness: 5,531 utterances), improvised and scripted together, as SUPERB's ER task,
    s3prl and EmoBox run it. Validation: speakers drawn from the training sessions.
    """

    name = "IEMOCAP"
    homepage = "https://sail.usc.edu/iemocap/ (release form; the folder IEMOCAP_full_release)"
    attribute_scale = (1.0, 5.0)
    CODES = {"neu": "neutral", "hap": "happiness", "ang": "anger", "sad": "sadness", "fru": "frustration",
             "sur": "surprise", "fea": "fear", "dis": "disgust", "exc": "excitement",
             "xxx": None, "oth": None}  # xxx: the annotators did not agree; oth: "other"
    KINDS = ("both", "improvised", "scripted")
    line = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\t(\S+)\t(\S+)\t\[\s*([-\d.]+),\s*([-\d.]+),\s*([-\d.]+)\s*\]")

    def __init__(self, kind: str = "both", excitement_as_happiness: bool = True):
        """``kind``: improvised, scripted or both dialogues; ``excitement_as_happiness``: the
        4-class protocol's merge (false keeps ``excitement`` a class of its own)."""
        if kind not in self.KINDS:
            raise not_one_of("data.corpus.kind", kind, self.KINDS)
        self.kind, self.excitement_as_happiness = kind, excitement_as_happiness

    def check_available(self, root) -> None:
        super().check_available(root)
        if root is not None and not sorted(Path(root).expanduser().glob("Session[1-5]")):
            raise MissingCorpus(self.missing_message(Path(root).expanduser()) +
                                " (data.root is the folder holding Session1 ... Session5)")

    def scan(self, root):
        root = Path(root).expanduser()
        self.check_available(root)
        wavs = {p.stem: p for p in root.glob("Session[1-5]/sentences/wav/*/*.wav") if not p.name.startswith(".")}
        clips, skipped, labelled = [], [], set()
        for sheet in sorted(root.glob("Session[1-5]/dialog/EmoEvaluation/*.txt")):
            session = sheet.parts[-4]
            for match in filter(None, map(self.line.match, sheet.read_text(errors="replace").splitlines())):
                utterance, code = match.group(3), match.group(4)
                labelled.add(utterance)
                if utterance not in wavs:
                    skipped.append((f"{sheet}: {utterance}", "labelled, but its wav is missing"))
                    continue
                if not self._wanted(utterance):
                    continue
                try:
                    clips.append(self._clip(wavs[utterance], session, utterance, code, match.groups()[4:]))
                except UnknownLabel as err:
                    skipped.append((str(wavs[utterance]), str(err)))
        skipped += [(str(path), "no label line in its dialog's EmoEvaluation file")
                    for stem, path in sorted(wavs.items()) if stem not in labelled]
        return clips, skipped

    def _wanted(self, utterance: str) -> bool:
        scripted = "_script" in utterance
        return self.kind == "both" or (self.kind == "scripted") == scripted

    def _clip(self, path: Path, session: str, utterance: str, code: str, vad) -> Clip:
        if code not in self.CODES:
            raise UnknownLabel(f"unknown emotion code {code!r}")
        emotion = self.CODES[code]
        if emotion == "excitement" and self.excitement_as_happiness:
            emotion = "happiness"
        valence, arousal, dominance = to_unit(vad, self.attribute_scale)  # the file's order: V, A, D
        letter = utterance.rsplit("_", 1)[-1][:1].upper()
        if letter not in "FM":
            raise UnknownLabel(f"utterance id {utterance!r} does not end in _F### or _M###")
        return Clip(str(path), f"Ses{int(session[len('Session'):]):02d}{letter}", emotion,
                    (arousal, valence, dominance), session)

    def check_protocol(self, fold: int) -> None:
        if not (isinstance(fold, int) and 0 <= fold < 5):
            raise ConfigError(f"data.fold={fold!r} is not valid: IEMOCAP's leave-one-session-out protocol has 5 "
                              "folds, 0 to 4 (fold k tests Session k+1).")

    def protocol_split(self, clips, *, fold, val_fraction, seed):
        return leave_one_session_out([c.session for c in clips], [c.speaker for c in clips],
                                     [c.emotion for c in clips], fold, val_fraction, seed)


class MspPodcast(Corpus):
    """MSP-Podcast (UT Dallas MSP lab), releases 1.11 and 1.12: naturalistic podcast speech.

    Audio: ``Audios/<FileName>``. Labels: ``Labels/labels_consensus.csv`` with the columns
    ``FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set`` (Lotfian & Busso,
    2019, IEEE Trans. Affective Computing 10(4); the release's README). Categories A S H U F D C N
    (anger, sadness, happiness, surprise, fear, disgust, contempt, neutral), the eight of the
    Odyssey 2024 SER challenge (Goncalves et al., 2024); X (no agreement) and O (other) have no
    class but keep their attribute ratings (arousal, valence, dominance, 1-7).

    The protocol (``data.split=protocol``): the official partitions, Train for training,
    Development for validation, ``test_set`` (Test1, or Test2) for test. A clip whose SpkrID is
    "Unknown" has a speaker of its own: it is never pooled with strangers, in per-speaker
    statistics (it is standardised with the pooled statistics of the training speakers, as
    ser-predict standardises a lone file) or in speaker intervals (each is one resampled unit).
    """

    name = "MSP-Podcast"
    homepage = "https://ecs.utdallas.edu/research/researchgroups/msp-lab/MSP-Podcast.html (academic licence)"
    attribute_scale = (1.0, 7.0)
    labels = {"A": "anger", "S": "sadness", "H": "happiness", "U": "surprise", "F": "fear", "D": "disgust",
              "C": "contempt", "N": "neutral", "X": None, "O": None}
    COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Split_Set")
    PARTITIONS = ("Train", "Development", "Test1", "Test2", "Test3")
    TEST_SETS = ("Test1", "Test2")
    LABELS = Path("Labels") / "labels_consensus.csv"

    def __init__(self, test_set: str = "Test1"):
        if test_set not in self.TEST_SETS:
            raise not_one_of("data.corpus.test_set", test_set, self.TEST_SETS)
        self.test_set = test_set

    def check_available(self, root) -> None:
        super().check_available(root)
        if root is None:
            return
        labels = Path(root).expanduser() / self.LABELS
        if not labels.is_file():
            raise MissingCorpus(self.missing_message(Path(root).expanduser()) + f" ({labels} is missing)")
        with open(labels, newline="") as handle:
            header = next(csv.reader(handle), [])
        missing = [c for c in self.COLUMNS if c not in header]
        if missing:
            raise ConfigError(f"{labels} lacks the column(s) {', '.join(missing)} of MSP-Podcast's "
                              f"labels_consensus.csv ({', '.join(self.COLUMNS)}): is it another release's file?")

    def scan(self, root):
        root = Path(root).expanduser()
        self.check_available(root)
        wavs = {p.name: p for p in (root / "Audios").rglob("*.wav")}
        clips, skipped, labelled = [], [], set()
        with open(root / self.LABELS, newline="") as handle:
            for row in csv.DictReader(handle):
                name = row["FileName"].strip()
                labelled.add(name)
                if name not in wavs:
                    skipped.append((name, "in labels_consensus.csv, but not in Audios/"))
                    continue
                try:
                    clips.append(self._clip(wavs[name], row))
                except UnknownLabel as err:
                    skipped.append((str(wavs[name]), str(err)))
        skipped += [(str(path), "no row in labels_consensus.csv") for name, path in sorted(wavs.items())
                    if name not in labelled]
        return clips, skipped

    def _clip(self, path: Path, row: dict) -> Clip:
        code, partition = row["EmoClass"].strip(), row["Split_Set"].strip()
        if partition not in self.PARTITIONS:
            raise UnknownLabel(f"unknown partition {partition!r} (known: {', '.join(self.PARTITIONS)})")
        if code not in self.labels:
            raise UnknownLabel(f"unknown emotion code {code!r}")
        attributes = to_unit((row["EmoAct"], row["EmoVal"], row["EmoDom"]), self.attribute_scale)
        speaker = row["SpkrID"].strip()
        known = speaker not in ("", "Unknown")
        return Clip(str(path), speaker if known else f"Unknown/{path.stem}", self.labels[code], attributes,
                    partition, known)

    def check_protocol(self, fold: int) -> None:
        """The partitions are the protocol: nothing to check of data.fold."""

    def protocol_split(self, clips, *, fold, val_fraction, seed):
        return by_partition([c.session for c in clips], {"Train": "train", "Development": "val", self.test_set: "test"})
