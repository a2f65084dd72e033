from __future__ import annotations

import pytest

from ser.data.splits import assign_splits

EMOTIONS = ["anger", "happiness", "neutral", "sadness"]


def corpus(n_speakers: int, per_emotion: int = 3):
    speakers, emotions = [], []
    for s in range(n_speakers):
        for e in EMOTIONS:
            speakers += [f"spk{s:02d}"] * per_emotion
            emotions += [e] * per_emotion
    return speakers, emotions


def groups(speakers, splits):
    return {name: {s for s, x in zip(speakers, splits) if x == name} for name in ("train", "val", "test")}


@pytest.mark.parametrize(("speakers", "val"), [(4, 1), (6, 2), (8, 2), (10, 3), (24, 3), (91, 9)])
def test_validation_gets_three_speakers_where_training_keeps_half(speakers, val):
    names, emotions = corpus(speakers, per_emotion=1)
    g = groups(names, assign_splits(names, emotions, "speaker", val_fraction=0.1, test_fraction=0.2, seed=0))
    assert len(g["val"]) == val
    assert len(g["train"]) >= speakers / 2


def test_speaker_split_is_disjoint_covers_every_emotion_and_is_deterministic():
    speakers, emotions = corpus(12)
    splits = assign_splits(speakers, emotions, "speaker", val_fraction=0.1, test_fraction=0.2, seed=3)
    g = groups(speakers, splits)
    assert not (g["train"] & g["val"]) and not (g["train"] & g["test"]) and not (g["val"] & g["test"])
    assert len(g["test"]) == 2 and len(g["val"]) == 3 and len(g["train"]) == 7
    for name in g:
        assert {e for e, x in zip(emotions, splits) if x == name} == set(EMOTIONS)
    again = assign_splits(speakers, emotions, "speaker", val_fraction=0.1, test_fraction=0.2, seed=3)
    other = assign_splits(speakers, emotions, "speaker", val_fraction=0.1, test_fraction=0.2, seed=4)
    assert again == splits and other != splits


def test_speaker_split_avoids_a_speaker_set_missing_an_emotion():
    speakers, emotions = corpus(6)
    # spk00 .. spk02 never say "sadness": no split may consist only of them
    keep = [not (s in {"spk00", "spk01", "spk02"} and e == "sadness") for s, e in zip(speakers, emotions)]
    speakers = [s for s, k in zip(speakers, keep) if k]
    emotions = [e for e, k in zip(emotions, keep) if k]
    for seed in range(20):
        splits = assign_splits(speakers, emotions, "speaker", val_fraction=0.2, test_fraction=0.2, seed=seed)
        for name in ("train", "val", "test"):
            assert "sadness" in {e for e, x in zip(emotions, splits) if x == name}


def test_two_speakers_hold_one_out_and_validate_on_the_other():
    speakers, emotions = corpus(2, per_emotion=10)
    splits = assign_splits(speakers, emotions, "speaker", val_fraction=0.1, test_fraction=0.2, seed=0)
    g = groups(speakers, splits)
    assert len(g["test"]) == 1 and g["val"] == g["train"] and not (g["test"] & g["train"])
    for e in EMOTIONS:
        assert sum(1 for em, x in zip(emotions, splits) if em == e and x == "val") == 1


def test_random_split_is_stratified_utterance_level():
    speakers, emotions = corpus(4, per_emotion=10)
    splits = assign_splits(speakers, emotions, "random", val_fraction=0.1, test_fraction=0.2, seed=0)
    for e in EMOTIONS:
        mine = [x for em, x in zip(emotions, splits) if em == e]
        assert mine.count("test") == 8 and mine.count("val") == 4


def test_kfold_test_folds_partition_the_speakers():
    speakers, emotions = corpus(10)
    seen = []
    for fold in range(5):
        splits = assign_splits(speakers, emotions, "kfold", val_fraction=0, test_fraction=0, seed=1,
                               fold=fold, num_folds=5)
        g = groups(speakers, splits)
        assert len(g["test"]) == 2 and len(g["val"]) == 2 and not (g["test"] & g["val"])
        seen += sorted(g["test"])
    assert sorted(seen) == sorted(set(speakers))


def test_leave_one_speaker_out():
    speakers, emotions = corpus(4)
    tests = [groups(speakers, assign_splits(speakers, emotions, "kfold", val_fraction=0, test_fraction=0,
                                            seed=0, fold=k, num_folds=4))["test"] for k in range(4)]
    assert all(len(t) == 1 for t in tests) and set().union(*tests) == set(speakers)


def test_bad_split_arguments_are_clear():
    speakers, emotions = corpus(4)
    with pytest.raises(ValueError, match="data.split"):
        assign_splits(speakers, emotions, "bogus", val_fraction=0.1, test_fraction=0.2, seed=0)
    with pytest.raises(ValueError, match="data.fold"):
        assign_splits(speakers, emotions, "kfold", val_fraction=0, test_fraction=0, seed=0, fold=9, num_folds=4)


def test_a_split_file_gives_every_clip_the_split_it_names(tmp_path):
    import csv

    import pytest

    from ser.data.splits import assign_splits
    from ser.errors import ConfigError

    paths = [f"/data/corpus/{s}/{s}_{e}.wav" for s in ("a", "b", "c", "d") for e in ("x", "y")]
    speakers = [p.split("/")[3] for p in paths]
    emotions = [p[-5] for p in paths]

    def split_file(rows, header=("path", "split")):
        path = tmp_path / f"split{len(list(tmp_path.iterdir()))}.csv"
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])
        return str(path)

    def assign(file):
        return assign_splits(speakers, emotions, "file", val_fraction=0.1, test_fraction=0.2, seed=0,
                             paths=paths, split_file=file)

    # Absolute paths as a run's split.csv has them, or relative to the corpus folder.
    full = split_file([(p, {"a": "train", "b": "train", "c": "val", "d": "test"}[s]) for p, s in zip(paths, speakers)])
    assert assign(full) == ["train"] * 4 + ["val"] * 2 + ["test"] * 2
    relative = split_file([("a/a_x.wav", "train"), ("b/b_y.wav", "test")])
    assert assign(relative) == ["train", "unused", "unused", "test", *["unused"] * 4]
    by_speaker = split_file([("a", "test"), ("b", "val"), ("c", "train")], header=("speaker", "split"))
    assert assign(by_speaker) == ["test"] * 2 + ["val"] * 2 + ["train"] * 2 + ["unused"] * 2
    for rows, header, complaint in (
            ([("z/z_x.wav", "train")], ("path", "split"), "match no single clip"),
            ([("a/a_x.wav", "train"), ("a/a_y.wav", "test")], ("path", "split"), "more than one side"),
            ([("zed", "train")], ("speaker", "split"), "not in this corpus"),
            ([("a", "dev")], ("speaker", "split"), "use train, val and test"),
            ([("a", "train")], ("who", "split"), "a path or speaker column")):
        with pytest.raises(ConfigError, match=complaint):
            assign(split_file(rows, header))
    with pytest.raises(ConfigError, match="is not a file"):
        assign(str(tmp_path / "missing.csv"))
