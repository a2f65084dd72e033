"""Train/val/test assignment. Speaker-independent unless the user explicitly asks otherwise.

Every function is a pure function of its inputs and ``seed`` (no global RNG), so a split is
reproduced byte for byte by the same seed on any machine.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from ser.errors import ConfigError, not_one_of

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
SPLIT_FILE = "split.csv"  # a run's clips and their splits, beside its results.json (train.py writes it)
METHODS = ("speaker", "random", "kfold", "file", "protocol")  # data.split ("protocol": the corpus's published one)
MIN_VAL_SPEAKERS = 3
UNUSED = "unused"  # a clip a split file does not list: in no split


def assign_splits(speakers: list[str], emotions: list[str], method: str, *, val_fraction: float,
                  test_fraction: float, seed: int, fold: int = 0, num_folds: int = 5,
                  paths: list[str] | None = None, split_file: str | None = None) -> list[str]:
    """Return the split name of every clip, given its speaker and emotion (and, for
    ``method="file"``, its path: see :func:`from_file`)."""
    if method == "file":
        return from_file(split_file, paths, speakers)
    if method == "speaker":
        return by_speaker(speakers, emotions, val_fraction, test_fraction, seed)
    if method == "random":
        return by_utterance(emotions, val_fraction, test_fraction, seed)
    if method == "kfold":
        return by_speaker_fold(speakers, emotions, fold, num_folds, seed)
    raise not_one_of("data.split", method, METHODS)


def by_speaker(speakers, emotions, val_fraction, test_fraction, seed) -> list[str]:
    """Disjoint speaker sets, each seeing every emotion (a clip without a category, None, is
    kept for its attributes and needs no covering), val at least three speakers where
    training keeps half of them. With fewer than three speakers (TESS)
    one speaker is held out for test and val is drawn from the other's utterances."""
    unique = sorted(set(speakers))
    if len(unique) < 3:
        return _hold_out_one_speaker(speakers, emotions, unique, val_fraction, seed)
    n_test = max(1, round(test_fraction * len(unique)))
    n_val = max(1, round(val_fraction * len(unique)))
    # The checkpoint is chosen on val: on one or two speakers that choice follows their voices.
    # Take at least three where the corpus can spare them (training keeps half the speakers).
    while n_val < MIN_VAL_SPEAKERS and len(unique) - n_test - (n_val + 1) >= len(unique) / 2:
        n_val += 1
    if n_test + n_val >= len(unique):
        raise ConfigError(f"{len(unique)} speakers cannot give {n_test} test and {n_val} val speakers "
                         "and still leave some to train on")
    seen = _emotions_by_speaker(speakers, emotions)
    rng = np.random.default_rng(seed)
    for _ in range(2000):
        order = [unique[i] for i in rng.permutation(len(unique))]
        groups = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
                  "train": order[n_test + n_val:]}
        if all(_covers(seen, group, set(emotions) - {None}) for group in groups.values()):
            split_of = {s: name for name, group in groups.items() for s in group}
            return [split_of[s] for s in speakers]
    raise ConfigError("no speaker split found in which train, val and test each contain every emotion; "
                     "restrict data.emotions or use data.split=random")


def by_utterance(emotions, val_fraction, test_fraction, seed) -> list[str]:
    """The seeds' protocol: utterances shuffled regardless of speaker, stratified by emotion.
    Speakers leak between splits, so scores are speaker-dependent."""
    rng = np.random.default_rng(seed)
    out = [""] * len(emotions)
    for indices in _indices_by([e or '' for e in emotions]).values():
        indices = [indices[i] for i in rng.permutation(len(indices))]
        n_test = round(test_fraction * len(indices))
        n_val = round(val_fraction * len(indices))
        for rank, i in enumerate(indices):
            out[i] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def by_speaker_fold(speakers, emotions, fold, num_folds, seed) -> list[str]:
    """Speaker-grouped K-fold: fold ``fold`` is test, the next fold is val, the rest train.
    With ``num_folds`` equal to the number of speakers this is leave-one-speaker-out."""
    unique = sorted(set(speakers))
    if not 3 <= num_folds <= len(unique):
        raise ConfigError(f"data.num_folds must be between 3 and the number of speakers ({len(unique)}), "
                         f"got {num_folds}")
    if not 0 <= fold < num_folds:
        raise ConfigError(f"data.fold must be in [0, {num_folds}), got {fold}")
    rng = np.random.default_rng(seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    fold_of = {s: i % num_folds for i, s in enumerate(order)}
    names = {fold: "test", (fold + 1) % num_folds: "val"}
    out = [names.get(fold_of[s], "train") for s in speakers]
    seen = _emotions_by_speaker(speakers, emotions)
    for name in SPLITS:
        group = {s for s, split in zip(speakers, out) if split == name}
        if not _covers(seen, group, set(emotions) - {None}):
            log.warning("fold %d: the %s speakers do not cover every emotion", fold, name)
    return out


def leave_one_session_out(sessions: list[str], speakers: list[str], emotions: list[str | None], fold: int,
                          val_fraction: float, seed: int) -> list[str]:
    """Session ``fold`` (in sorted order) is test, as IEMOCAP's leave-one-session-out protocol
    tests each session once. Validation: ``max(1, round(val_fraction * n))`` of the ``n``
    training-session speakers, drawn with ``seed`` among those draws whose validation speakers
    cover every emotion the training sessions have (a checkpoint chosen on unseen speakers,
    as the test is); the rest train."""
    unique = sorted(set(sessions))
    if not 0 <= fold < len(unique):
        raise ConfigError(f"data.fold={fold} is not valid: the corpus has {len(unique)} sessions "
                          f"({', '.join(unique)}); use 0 to {len(unique) - 1}.")
    test = unique[fold]
    training = sorted({s for s, session in zip(speakers, sessions) if session != test})
    n_val = max(1, round(val_fraction * len(training)))
    if n_val >= len(training):
        raise ConfigError(f"the {len(training)} training-session speakers cannot spare {n_val} for validation")
    seen = _emotions_by_speaker(speakers, emotions)
    required = set().union(*(seen[s] for s in training)) - {None}
    rng = np.random.default_rng(seed)
    for attempt in range(200):
        val = {training[i] for i in rng.permutation(len(training))[:n_val]}
        if _covers(seen, val, required) or attempt == 199:
            break
    return ["test" if session == test else "val" if speaker in val else "train"
            for speaker, session in zip(speakers, sessions)]


def by_partition(partitions: list[str | None], names: dict[str, str]) -> list[str]:
    """A corpus's official partitions as the split (``names``: partition -> train/val/test);
    clips of any other partition are in no split."""
    out = [names.get(p, UNUSED) for p in partitions]
    missing = [split for split in SPLITS if split not in out]
    if missing:
        raise ConfigError(f"the corpus's partitions {sorted(set(filter(None, partitions)))} give no {missing[0]} "
                          f"clips (it takes {', '.join(k for k, v in names.items() if v == missing[0])})")
    return out


def from_file(split_file: str, paths: list[str], speakers: list[str]) -> list[str]:
    """The split of every clip as a shared file gives it, so that two models, labs or tools
    score exactly the same clips: ``split.csv`` of another run, or a published protocol
    rewritten as ``path,split`` rows (a path relative to the corpus folder matches the clip
    whose path ends with it) or ``speaker,split`` rows. Clips the file does not list are in no
    split. A row that matches no clip, a split name other than train/val/test, or a speaker
    on two sides is a :class:`ConfigError`: the file does not describe this corpus."""
    rows = read_split_file(split_file)
    if "path" in rows[0]:
        split_of = _split_by_path(split_file, rows, paths)
        out = [split_of.get(path, UNUSED) for path in paths]
    else:
        given = _one_split_per_speaker(split_file, [(r["speaker"], r["split"]) for r in rows])
        unknown = sorted(set(given) - set(speakers))
        if unknown:
            raise ConfigError(f"data.split_file={split_file}: {len(unknown)} speaker(s) it lists are not in this "
                              f"corpus (e.g. {', '.join(unknown[:5])}); it describes another corpus or naming.")
        out = [given.get(speaker, UNUSED) for speaker in speakers]
    _one_split_per_speaker(split_file, [(s, o) for s, o in zip(speakers, out) if o != UNUSED])
    left = out.count(UNUSED)
    if left:
        log.info("data.split_file lists %d of %d clips; the other %d are in no split", len(out) - left, len(out), left)
    return out


def read_split_file(split_file: str) -> list[dict[str, str]]:
    """The rows of a split file, checked for its columns and split names."""
    path = Path(split_file or "").expanduser()
    if not split_file or not path.is_file():
        raise ConfigError(f"data.split=file reads data.split_file, but {split_file!r} is not a file: give the "
                          "split.csv of another run, or path,split / speaker,split rows.")
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("split") != UNUSED]  # a split.csv's unlisted clips
    if not rows or "split" not in rows[0] or not ({"path", "speaker"} & set(rows[0])):
        raise ConfigError(f"data.split_file={split_file} needs a header with a split column and a path or "
                          "speaker column (the split.csv a run writes has both).")
    wrong = sorted({r["split"] for r in rows} - set(SPLITS))
    if wrong:
        raise ConfigError(f"data.split_file={split_file} names splits {wrong}; use train, val and test.")
    return rows


def _split_by_path(split_file: str, rows: list[dict[str, str]], paths: list[str]) -> dict[str, str]:
    """clip path -> split, a row matching the clip of that path or whose path ends with it."""
    by_suffix = {}
    for path in paths:
        parts = Path(path).parts
        for i in range(len(parts)):
            by_suffix.setdefault(str(Path(*parts[i:])), []).append(path)
    split_of, unmatched = {}, []
    for row in rows:
        matches = by_suffix.get(str(Path(row["path"])), [])
        if len(matches) != 1:
            unmatched.append(row["path"])
            continue
        split_of[matches[0]] = row["split"]
    if unmatched:
        raise ConfigError(f"data.split_file={split_file}: {len(unmatched)} of its {len(rows)} paths match no "
                          f"single clip of this corpus (e.g. {', '.join(unmatched[:3])}); give paths as the "
                          "run's split.csv has them or relative to data.root.")
    return split_of


def _one_split_per_speaker(split_file: str, pairs: list[tuple[str, str]]) -> dict[str, str]:
    sides = defaultdict(set)
    for speaker, split in pairs:
        sides[speaker].add(split)
    both = sorted(s for s, names in sides.items() if len(names) > 1)
    if both:
        raise ConfigError(f"data.split_file={split_file} puts speaker(s) {', '.join(both[:5])} on more than one "
                          f"side ({', '.join(sorted(sides[both[0]]))}): a speaker-independent split keeps each "
                          "speaker on one. For a speaker-dependent protocol use data.split=random.")
    return {s: names.pop() for s, names in sides.items()}


def _hold_out_one_speaker(speakers, emotions, unique, val_fraction, seed) -> list[str]:
    if len(unique) < 2:
        raise ConfigError("a speaker-independent split needs at least two speakers; "
                         "use data.split=random for a single-speaker corpus")
    rng = np.random.default_rng(seed)
    test_speaker = unique[int(rng.integers(len(unique)))]
    out = ["test" if s == test_speaker else "train" for s in speakers]
    train_idx = [i for i, s in enumerate(speakers) if s != test_speaker]
    by_emotion = _indices_by([emotions[i] or '' for i in train_idx])
    for local in by_emotion.values():
        chosen = rng.permutation(len(local))[: max(1, round(val_fraction * len(local)))]
        for j in chosen:
            out[train_idx[local[j]]] = "val"
    log.info("Only %d speakers: %s is held out for test, val comes from the other speaker's "
             "utterances", len(unique), test_speaker)
    return out


def _indices_by(values) -> dict[str, list[int]]:
    groups = defaultdict(list)
    for i, v in enumerate(values):
        groups[v].append(i)
    return dict(sorted(groups.items()))


def _emotions_by_speaker(speakers, emotions) -> dict[str, set[str]]:
    seen = defaultdict(set)
    for s, e in zip(speakers, emotions):
        seen[s].add(e)
    return seen


def _covers(seen, group, required) -> bool:
    return required <= set().union(*(seen[s] for s in group))
