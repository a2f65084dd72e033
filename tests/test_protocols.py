"""Every published protocol end to end, on small corpora in the real layouts: IEMOCAP's five
leave-one-session-out folds, MSP-Podcast's partitions with either test set, and every
leave-one-speaker-out fold of the acted corpora (the EmoBox way of reporting them), for the
default model and the CNN-GRU, with categories and, where the corpus rates them, attributes.

Each run is train.py's work in this process, one short epoch, so the whole matrix costs what a
few train.py starts would.
"""

from __future__ import annotations

import csv
import math

import pytest

from conftest import train_here
from corpora_fixtures import LAYOUTS, iemocap, msp_podcast

MODELS = ["egemaps_mlp", "cnn_gru"]  # the default recipe, and the log-mel network
SHORT = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.num_sanity_val_steps=0",
         "logger=csv", "data.num_workers=0", "test_bootstrap=20"]
ACTED_SPEAKERS = {"cremad": 6, "ravdess": 4, "emodb": 5}  # in corpora_fixtures' tiny copies


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("protocols")
    made = {name: LAYOUTS[name](base / name) for name in ACTED_SPEAKERS}
    made["iemocap"] = iemocap(base / "IEMOCAP_full_release")
    msp_podcast(base / "MSP-Podcast")
    made["msp_podcast"] = base / "MSP-Podcast"
    made["cache"] = base / "cache"  # one cache: each front end computes a clip once for every fold
    return made


def protocol_run(roots, tmp_path, data: str, model: str, *overrides) -> dict:
    results = train_here([f"model={model}", f"data={data}", f"data.root={roots[data]}",
                          f"data.cache_dir={roots['cache']}", *SHORT, *overrides], tmp_path)
    assert isinstance(results, dict), results  # a paragraph here is a protocol that does not run
    return results


def scores_are_whole(results: dict) -> None:
    for key in ("test/uar", "test/ccc"):
        if key in results:
            assert math.isfinite(results[key]), results
    if "confusion_matrix" in results:
        assert sum(map(sum, results["confusion_matrix"])) == results["n_test"] > 0


@pytest.mark.parametrize("task", ["categorical", "attributes"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fold", range(5))
def test_every_iemocap_session_fold(roots, tmp_path, fold, model, task):
    results = protocol_run(roots, tmp_path, "iemocap", model, f"data.fold={fold}", f"task={task}")
    assert results["split"] == "protocol" and results["test_group"] == f"Session{fold + 1}"
    tested = {row["speaker"] for row in csv.DictReader(open(tmp_path / "split.csv")) if row["split"] == "test"}
    assert tested == {f"Ses{fold + 1:02d}F", f"Ses{fold + 1:02d}M"}
    scores_are_whole(results)


@pytest.mark.parametrize("task", ["categorical", "attributes"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("test_set", ["Test1", "Test2"])
def test_msp_podcast_partitions_with_either_test_set(roots, tmp_path, test_set, model, task):
    results = protocol_run(roots, tmp_path, "msp_podcast", model, f"data.corpus.test_set={test_set}",
                           f"task={task}")
    partition = {row["FileName"]: row["Split_Set"]
                 for row in csv.DictReader(open(roots["msp_podcast"] / "Labels" / "labels_consensus.csv"))}
    split = list(csv.DictReader(open(tmp_path / "split.csv")))
    assert {partition[row["path"].rsplit("/", 1)[-1]] for row in split if row["split"] == "test"} == {test_set}
    assert {partition[row["path"].rsplit("/", 1)[-1]] for row in split if row["split"] == "val"} == {"Development"}
    scores_are_whole(results)


ACTED_FOLDS = [(data, fold) for data, speakers in ACTED_SPEAKERS.items() for fold in range(speakers)]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("data", "fold"), ACTED_FOLDS, ids=[f"{d}-{f}" for d, f in ACTED_FOLDS])
def test_every_leave_one_speaker_out_fold_of_the_acted_corpora(roots, tmp_path, data, fold, model):
    speakers = ACTED_SPEAKERS[data]
    results = protocol_run(roots, tmp_path, data, model, "data.split=kfold", f"data.num_folds={speakers}",
                           f"data.fold={fold}")
    split = list(csv.DictReader(open(tmp_path / "split.csv")))
    tested = {row["speaker"] for row in split if row["split"] == "test"}
    assert len(tested) == 1 and not tested & {row["speaker"] for row in split if row["split"] != "test"}
    scores_are_whole(results)
