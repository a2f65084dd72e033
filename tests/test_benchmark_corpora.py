"""The field's benchmarks: IEMOCAP and MSP-Podcast in their real layouts, under their published
protocols, with categories and attributes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ser.data.corpora import Iemocap, MspPodcast
from ser.errors import ConfigError

from conftest import REPO
from corpora_fixtures import IEMOCAP_CODES, iemocap, iemocap_vad, msp_podcast

QUICK = ["debug=limit", "logger=csv", "trainer.limit_test_batches=1.0", "trainer.limit_val_batches=1.0"]


@pytest.fixture(scope="module")
def iemocap_root(tmp_path_factory):
    return iemocap(tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release")


@pytest.fixture(scope="module")
def msp_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("msp") / "MSP-Podcast"
    return root, msp_podcast(root)


def test_iemocap_parses_speakers_classes_sessions_and_attributes(iemocap_root):
    clips, skipped = Iemocap().scan(iemocap_root)
    by_name = {clip.path.rsplit("/", 1)[1][:-4]: clip for clip in clips}
    assert len(clips) == 5 * 2 * len(IEMOCAP_CODES)
    # The speaker is the one the utterance id names, not the dialogue's motion-capture actor.
    assert by_name["Ses01F_impro01_M001"].speaker == "Ses01M" and by_name["Ses01M_script01_1_F000"].speaker == "Ses01F"
    assert {c.speaker for c in clips} == {f"Ses{s:02d}{g}" for s in range(1, 6) for g in "FM"}
    assert by_name["Ses03F_impro01_F002"].emotion == "happiness"  # exc, merged as the 4-class protocol does
    assert by_name["Ses03F_impro01_F006"].emotion is None  # xxx: no agreed category, attributes kept
    assert by_name["Ses02M_script01_1_M005"].emotion == "frustration" and by_name["Ses02F_impro01_F000"].session == "Session2"
    v, a, d = iemocap_vad(4, 3)  # the file's order is V, A, D; ser's is arousal, valence, dominance
    assert by_name["Ses04F_impro01_M003"].attributes == pytest.approx(((a - 1) / 4, (v - 1) / 4, (d - 1) / 4))
    reasons = {path.rsplit("/", 1)[-1].split(": ")[-1].removesuffix(".wav"): why for path, why in skipped}
    assert reasons == {"Ses05F_impro01_F098": "labelled, but its wav is missing",
                       "Ses05F_impro01_M097": "unknown emotion code 'zzz'",
                       "Ses05F_impro01_F096": "attribute ratings [3.0, 6.0, 3.0] outside the corpus's scale 1-5",
                       "Ses05F_impro01_M095": "no label line in its dialog's EmoEvaluation file"}
    excited = {c.emotion for c in Iemocap(excitement_as_happiness=False).scan(iemocap_root)[0]}
    assert "excitement" in excited
    scripted = Iemocap(kind="scripted").scan(iemocap_root)[0]
    assert scripted and all("_script" in c.path for c in scripted)


def test_leave_one_session_out_tests_each_session_once_and_validates_on_training_speakers(iemocap_root):
    clips = [c for c in Iemocap().scan(iemocap_root)[0] if c.emotion in ("anger", "happiness", "neutral", "sadness")]
    tested = {}
    for fold in range(5):
        split = Iemocap().protocol_split(clips, fold=fold, val_fraction=0.125, seed=0)
        sessions = {s: {c.session for c, x in zip(clips, split) if x == s} for s in ("train", "val", "test")}
        speakers = {s: {c.speaker for c, x in zip(clips, split) if x == s} for s in ("train", "val", "test")}
        assert sessions["test"] == {f"Session{fold + 1}"} and f"Session{fold + 1}" not in sessions["train"] | sessions["val"]
        assert len(speakers["val"]) == 1 and not speakers["val"] & speakers["train"]  # one held-out training speaker
        tested[fold] = speakers["test"]
    assert set().union(*tested.values()) == {c.speaker for c in clips}
    with pytest.raises(ConfigError, match="5 sessions"):
        Iemocap().protocol_split(clips, fold=5, val_fraction=0.125, seed=0)


def test_msp_podcast_parses_partitions_codes_unknown_speakers_and_attributes(msp_root):
    root, rows = msp_root
    clips, skipped = MspPodcast().scan(root)
    assert len(clips) == len(rows)
    by_name = {clip.path.rsplit("/", 1)[1]: clip for clip in clips}
    assert {c.emotion for c in clips} == {"anger", "sadness", "happiness", "surprise", "fear", "disgust", "contempt",
                                          "neutral", None}  # X and O: no class
    unknown = [c for c in clips if not c.speaker_known]
    assert unknown and len({c.speaker for c in unknown}) == len(unknown)  # never pooled with each other
    row = rows[13]
    clip = by_name[row["FileName"]]
    assert clip.session == row["Split_Set"] and clip.attributes == pytest.approx(
        tuple((float(row[k]) - 1) / 6 for k in ("EmoAct", "EmoVal", "EmoDom")))
    split = MspPodcast(test_set="Test2").protocol_split(clips, fold=0, val_fraction=0.1, seed=0)
    assert {c.session for c, s in zip(clips, split) if s == "test"} == {"Test2"}
    assert {c.session for c, s in zip(clips, split) if s == "val"} == {"Development"}
    assert {c.session for c, s in zip(clips, split) if s == "unused"} == {"Test1"}
    reasons = dict(skipped)
    assert reasons["MSP-PODCAST_0999_0001.wav"] == "in labels_consensus.csv, but not in Audios/"
    assert "unknown partition 'Test9'" in next(v for k, v in reasons.items() if k.endswith("0998_0001.wav"))
    assert "outside the corpus's scale 1-7" in next(v for k, v in reasons.items() if k.endswith("0997_0001.wav"))
    assert next(v for k, v in reasons.items() if k.endswith("0996_0001.wav")) == "no row in labels_consensus.csv"


def test_a_labels_file_missing_a_column_is_one_paragraph_before_any_work(msp_root, tmp_path):
    root, _ = msp_root
    broken = tmp_path / "MSP-Podcast"
    (broken / "Labels").mkdir(parents=True)
    (broken / "Audios").mkdir()
    (broken / "Audios" / "a.wav").write_bytes((root / "Audios" / "MSP-PODCAST_0001_0001.wav").read_bytes())
    text = (root / "Labels" / "labels_consensus.csv").read_text().replace("EmoDom", "Dominance")
    (broken / "Labels" / "labels_consensus.csv").write_text(text)
    proc = subprocess.run([sys.executable, "train.py", "data=msp_podcast", f"data.root={broken}",
                           f"data.cache_dir={tmp_path / 'cache'}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "lacks the column(s) EmoDom" in proc.stderr and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("data", "message"), [("iemocap", "data.fold=5 is not valid: IEMOCAP's"),
                                               ("cremad", "data.split=protocol: CREMA-D has no published protocol")])
def test_a_protocol_fold_that_cannot_be_is_one_paragraph_before_any_work(iemocap_root, tmp_path, data, message):
    root = iemocap_root if data == "iemocap" else tmp_path
    proc = subprocess.run([sys.executable, "train.py", f"data={data}", f"data.root={root}", "data.split=protocol",
                           "data.fold=5", f"data.cache_dir={tmp_path / 'cache'}"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "cache").exists()


def test_iemocap_folds_run_as_one_multirun_and_end_with_the_fold_table(iemocap_root, cache_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "train.py", "-m", "data=iemocap", f"data.root={iemocap_root}",
                           "data.fold=0,1,2,3,4", *QUICK, f"hydra.sweep.dir={sweep}"], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (sweep / "folds.md").read_text()
    assert "5 folds" in table and "mean ± std" in table and "mean ± std" in proc.stdout
    for fold in range(5):
        results = json.loads((sweep / str(fold) / "results.json").read_text())
        assert results["fold"] == fold and results["test_group"] == f"Session{fold + 1}"
        assert f"| {fold} | Session{fold + 1} | {results['n_test']} |" in table
        assert results["classes"] == ["anger", "happiness", "neutral", "sadness"]
        assert set(results["per_speaker_uar"]) == {f"Ses{fold + 1:02d}F", f"Ses{fold + 1:02d}M"}


def test_msp_podcast_trains_both_tasks_with_unknown_speakers_in_the_test(msp_root, train_cli, tmp_path):
    root, rows = msp_root
    train_cli(["data=msp_podcast", f"data.root={root}", "task=both", "model=cnn_gru", *QUICK], tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["task"] == "both" and results["split"] == "protocol" and results["classes"][6] == "contempt"
    for key in ("test/uar", "test/macro_f1", "test/ccc", "test/ccc_arousal", "test/ccc_valence", "test/ccc_dominance"):
        assert key in results
    # Each test clip of an unknown speaker is a speaker of its own: one resampled unit each.
    unknown = {s for s in results["per_speaker_ccc"] if s.startswith("Unknown/")}
    assert len(unknown) == sum(r["Split_Set"] == "Test1" and r["SpkrID"] == "Unknown" for r in rows) > 0
    assert results["bootstrap"]["speakers"] == len(results["per_speaker_uar"])  # the headline's units
    assert (tmp_path / "attributes.png").is_file() and (tmp_path / "confusion_matrix.png").is_file()
