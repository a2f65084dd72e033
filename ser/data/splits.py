"""Train/val/test assignment. Speaker-independent unless the user explicitly asks otherwise.

Every function is a pure function of its inputs and ``seed`` (no global RNG), so a split is
reproduced byte for byte by the same seed on any machine.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from ser.errors import ConfigError, not_one_of

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
METHODS = ("speaker", "random", "kfold")  # data.split
MIN_VAL_SPEAKERS = 3


def assign_splits(speakers: list[str], emotions: list[str], method: str, *, val_fraction: float,
                  test_fraction: float, seed: int, fold: int = 0, num_folds: int = 5) -> list[str]:
    """Return the split name of every clip, given its speaker and emotion."""
    if method == "speaker":
        return by_speaker(speakers, emotions, val_fraction, test_fraction, seed)
    if method == "random":
        return by_utterance(emotions, val_fraction, test_fraction, seed)
    if method == "kfold":
        return by_speaker_fold(speakers, emotions, fold, num_folds, seed)
    raise not_one_of("data.split", method, METHODS)


def by_speaker(speakers, emotions, val_fraction, test_fraction, seed) -> list[str]:
    """Disjoint speaker sets, each seeing every emotion, val at least three speakers where
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
        if all(_covers(seen, group, set(emotions)) for group in groups.values()):
            split_of = {s: name for name, group in groups.items() for s in group}
            return [split_of[s] for s in speakers]
    raise ConfigError("no speaker split found in which train, val and test each contain every emotion; "
                     "restrict data.emotions or use data.split=random")


def by_utterance(emotions, val_fraction, test_fraction, seed) -> list[str]:
    """The seeds' protocol: utterances shuffled regardless of speaker, stratified by emotion.
    Speakers leak between splits, so scores are speaker-dependent."""
    rng = np.random.default_rng(seed)
    out = [""] * len(emotions)
    for indices in _indices_by(emotions).values():
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
        if not _covers(seen, group, set(emotions)):
            log.warning("fold %d: the %s speakers do not cover every emotion", fold, name)
    return out


def _hold_out_one_speaker(speakers, emotions, unique, val_fraction, seed) -> list[str]:
    if len(unique) < 2:
        raise ConfigError("a speaker-independent split needs at least two speakers; "
                         "use data.split=random for a single-speaker corpus")
    rng = np.random.default_rng(seed)
    test_speaker = unique[int(rng.integers(len(unique)))]
    out = ["test" if s == test_speaker else "train" for s in speakers]
    train_idx = [i for i, s in enumerate(speakers) if s != test_speaker]
    by_emotion = _indices_by([emotions[i] for i in train_idx])
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
