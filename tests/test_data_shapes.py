"""The space of data shapes, generated (hypothesis): clip counts, speakers, classes per split,
batch sizes, folds and processes, clips shorter than one analysis frame or longer than
``data.max_seconds``. Whatever the shape, a run trains and tests to a results.json, or stops
with one paragraph (a :class:`~ser.errors.UserError`) and no traceback.

Corpora are written in the built-in corpus's naming (CREMA-D's ``actor_sentence_EMO_level``).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from ser.data import CremaD, SERDataModule
from ser.data.loading import TrainingBatches

from conftest import train_here
from corpora_fixtures import speech, write

SENTENCES = ["DFA", "IEO", "TIE", "IOM"]  # CREMA-D's sentence codes
CODES = {"anger": "ANG", "disgust": "DIS", "fear": "FEA", "happiness": "HAP", "neutral": "NEU", "sadness": "SAD"}


@given(clips=st.integers(1, 400), batch_size=st.integers(2, 70))
def test_training_batches_hold_every_clip_once_and_never_one_alone(clips, batch_size):
    sampler = TrainingBatches(range(clips), batch_size)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(clips))
    assert len(batches) == len(sampler)
    assert clips == 1 or min(map(len, batches)) >= 2
    assert max(map(len, batches)) <= batch_size + 1


def test_a_training_batch_of_one_clip_is_refused():
    with pytest.raises(ValueError, match="at least 2"):
        TrainingBatches(range(10), 1)


@pytest.fixture(scope="module")
def module_72(tmp_path_factory):
    """A data module over 72 clips of 6 speakers, split at random (a training split of 44)."""
    base = tmp_path_factory.mktemp("shapes")
    for actor in range(6):
        for emotion, code in CODES.items():
            for s, sentence in enumerate(("DFA", "IEO")):
                write(base / "c" / "AudioWAV" / f"{1001 + actor}_{sentence}_{code}_XX.wav",
                      speech(actor, emotion, s, 16000)[: 4000 * (1 + (actor + s) % 3)], 16000)
    dm = SERDataModule(CremaD(), str(base / "c"), list(CODES), split="random", num_workers=0,
                       cache_dir=str(base / "cache"), val_fraction=0.2, test_fraction=0.2)
    dm.prepare_data()
    dm.setup()
    return dm


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch_size=st.integers(2, 50), processes=st.integers(1, 4), epoch=st.integers(0, 3),
       order=st.sampled_from(["buckets", "balanced", "shuffle"]))
def test_every_process_takes_as_many_training_batches_none_of_one_and_together_every_clip(
        module_72, batch_size, processes, epoch, order):
    dm = module_72
    dm.batch_size = batch_size
    dm.bucket_by_length, dm.balanced_sampling = order == "buckets", order == "balanced"
    shares = []
    for rank in range(processes):
        dm.trainer = SimpleNamespace(world_size=processes, global_rank=rank)
        loader = dm.train_dataloader()
        if set_epoch := getattr(loader.batch_sampler.sampler, "set_epoch", None):
            set_epoch(epoch)  # as Lightning does before each epoch
        shares.append(list(loader.batch_sampler))
    dm.trainer = None
    clips = len(dm.datasets["train"])
    assert len({len(batches) for batches in shares}) == 1  # DDP would hang on uneven steps
    assert min(len(batch) for batches in shares for batch in batches) >= 2
    seen = [i for batches in shares for batch in batches for i in batch]
    assert len(seen) == -(-clips // processes) * processes  # shares padded to equal length only
    if order != "balanced":  # drawn with replacement: not every clip in every epoch
        assert set(seen) == set(range(clips))  # the processes agree on the epoch's order


def test_an_epoch_order_changes_with_the_epoch_in_every_process(module_72):
    dm = module_72
    dm.batch_size, dm.bucket_by_length, dm.balanced_sampling = 8, True, False
    dm.trainer = SimpleNamespace(world_size=2, global_rank=1)
    loader = dm.train_dataloader()
    orders = []
    for epoch in (0, 1):
        loader.batch_sampler.sampler.set_epoch(epoch)
        orders.append(list(loader.batch_sampler))
    dm.trainer = None
    assert orders[0] != orders[1]
    assert sorted(map(sorted, orders[0])) != sorted(map(sorted, orders[1]))


# -- whole runs on generated corpora ------------------------------------------------------------

@st.composite
def corpus_shapes(draw):
    """A corpus and a run over it: per speaker and emotion 0-3 clips of a drawn length (a frame
    is 25 ms: 10 ms is shorter than one), a split, a batch size and a model."""
    emotions = draw(st.lists(st.sampled_from(sorted(CODES)), min_size=2, max_size=4, unique=True))
    speakers = draw(st.integers(2, 7))
    seconds = st.sampled_from([0.01, 0.3, 0.8, 1.6])
    clips = {(s, e, k): draw(seconds) for s in range(speakers) for e in emotions
             for k in range(draw(st.integers(0, 3)))}
    split = draw(st.sampled_from(["speaker", "kfold", "random"]))
    folds = draw(st.integers(3, 5))
    return dict(clips=clips, emotions=emotions, split=split, num_folds=folds,
                fold=draw(st.integers(0, folds - 1)), batch_size=draw(st.integers(2, 9)),
                max_seconds=draw(st.sampled_from([None, 0.5, 10.0])),
                model=draw(st.sampled_from(["egemaps_mlp", "egemaps_mlp", "egemaps_linear", "cnn_gru"])))


def write_corpus(root: Path, clips: dict) -> None:
    for (speaker, emotion, take), seconds in clips.items():
        wave = np.tile(speech(speaker, emotion, take, 16000), 2)[: max(1, int(seconds * 16000))]
        write(root / "AudioWAV" / f"{1001 + speaker}_{SENTENCES[take]}_{CODES[emotion]}_XX.wav", wave, 16000)


def train_on(shape: dict, base: Path) -> dict | str:
    """results.json of one short run over the shape's corpus, or the paragraph it stopped with."""
    write_corpus(base / "corpus", shape["clips"])
    return train_here([f"model={shape['model']}", "data=cremad", f"data.root={base / 'corpus'}",
                       f"data.cache_dir={base / 'cache'}", f"data.emotions=[{','.join(shape['emotions'])}]",
                       f"data.split={shape['split']}", f"data.fold={shape['fold']}",
                       f"data.num_folds={shape['num_folds']}", f"data.batch_size={shape['batch_size']}",
                       "data.eval_batch_size=5", "data.num_workers=0",
                       f"data.max_seconds={shape['max_seconds'] if shape['max_seconds'] else 'null'}",
                       "data.val_fraction=0.25", "data.test_fraction=0.25", "logger=csv", "trainer.max_epochs=2",
                       "trainer.num_sanity_val_steps=0", "test_bootstrap=20"], base / "run")


# 6 speakers x 2 emotions x 2 clips, split by speaker: 8 training clips, in batches of 7 and 1.
LAST_BATCH_OF_ONE = dict(
    clips={(s, e, k): 0.8 for s in range(6) for e in ("anger", "sadness") for k in range(2)},
    emotions=["anger", "sadness"], split="speaker", num_folds=3, fold=0, batch_size=7,
    max_seconds=None, model="egemaps_mlp")


@pytest.mark.parametrize("model", ["egemaps_mlp", "egemaps_linear"])  # a BatchNorm1d over the functionals
def test_a_last_training_batch_of_one_clip_joins_the_batch_before_it(cache_dir, tmp_path, caplog, model):
    with caplog.at_level(logging.INFO, logger="ser.data.datamodule"):
        results = train_on(dict(LAST_BATCH_OF_ONE, model=model), tmp_path)
    assert results["n_train"] % 7 == 1 and np.isfinite(results["test/loss"])
    assert "8 training clips (this process's share) in batches of 7: the last clip joins the batch before it" in caplog.text


# Every clip longer than data.max_seconds, a speaker with one clip, a class absent from a speaker.
EVERY_CLIP_CROPPED = dict(LAST_BATCH_OF_ONE, clips={(s, e, k): 1.6 for s in range(5) for e in ("anger", "fear")
                                                   for k in range(2)} | {(5, "anger", 0): 1.6},
                          emotions=["anger", "fear"], batch_size=4, max_seconds=0.5, model="cnn_gru")


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(shape=corpus_shapes())
@example(shape=LAST_BATCH_OF_ONE)
@example(shape=EVERY_CLIP_CROPPED)
def test_any_corpus_shape_trains_to_results_or_stops_with_one_paragraph(cache_dir, shape):
    with tempfile.TemporaryDirectory() as folder:
        outcome = train_on(shape, Path(folder))
    event(f"stopped: the {outcome.split(' split ')[0].split()[-1]} split" if " split " in str(outcome)
          else "stopped: other" if isinstance(outcome, str) else f"trained ({shape['model']})")
    if isinstance(outcome, str):
        assert "\n" not in outcome.strip() and "Traceback" not in outcome, outcome
        return
    assert outcome["n_train"] >= 2 and outcome["n_test"] >= 1
    assert np.isfinite(outcome["test/loss"]) and 0 <= outcome["test/uar"] <= 1, outcome
    assert sum(map(sum, outcome["confusion_matrix"])) == outcome["n_test"]


def test_under_ddp_each_process_joins_its_own_last_clip(cache_dir, tmp_path):
    """Two processes, 8 training clips: a share of 4 each, in batches of 3 and 1, on every rank."""
    from conftest import run_train

    write_corpus(tmp_path / "corpus", LAST_BATCH_OF_ONE["clips"])
    proc = run_train(["model=egemaps_mlp", "data=cremad", f"data.root={tmp_path / 'corpus'}",
                      f"data.cache_dir={tmp_path / 'cache'}", "data.emotions=[anger,sadness]", "data.batch_size=3",
                      "data.val_fraction=0.25", "data.test_fraction=0.25", "data.num_workers=0", "logger=csv",
                      "trainer=ddp_sim", "trainer.max_epochs=2", "trainer.num_sanity_val_steps=0"], tmp_path / "run")
    said = proc.stdout + proc.stderr
    assert said.count("4 training clips (this process's share) in batches of 3") >= 2, said[-3000:]  # both ranks
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["n_train"] == 8 and sum(map(sum, results["confusion_matrix"])) == results["n_test"]
