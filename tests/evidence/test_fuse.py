"""ser-fuse: runs that scored the same clips combine into one answer per clip, scored as a test
is (same results.json schema, intervals over speakers), compared with each member by the paired
bootstrap; runs of another split are refused in one paragraph."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ser.evidence.fuse import FusionRefused, fuse
from ser.evidence.results import read_predictions
from ser.metrics import scores
from ser.tasks import CategoricalTask

from conftest import REPO, SMALL

CLASSES = ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
RUN = [*SMALL, "logger=csv", "trainer.max_epochs=1", "trainer.limit_val_batches=1", "callbacks.early_stopping=null"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, cache_dir):
    """Two models trained on the same speaker split; a copy of one whose split file says that one
    test clip was a validation clip (another split)."""
    from conftest import run_train

    root = tmp_path_factory.mktemp("fuse")
    for name, extra in (("cnn", ["model=cnn"]), ("lstm", ["model=lstm"])):
        run_train([*RUN, *extra], root / name)
    shutil.copytree(root / "cnn", root / "other")
    split = (root / "other" / "split.csv").read_text()
    (root / "other" / "split.csv").write_text(split.replace(",test", ",val", 1))
    return root


def test_the_fusion_is_the_mean_of_probabilities_scored_as_a_test(two_runs):
    a, b = read_predictions(two_runs / "cnn"), read_predictions(two_runs / "lstm")
    out = two_runs / "fused"
    proc = subprocess.run([sys.executable, "-m", "ser.evidence.fuse", str(two_runs / "cnn"), str(two_runs / "lstm"),
                           str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    fused = read_predictions(out)
    assert [r["path"] for r in fused] == [r["path"] for r in a] == [r["path"] for r in b]
    # Each clip's answer: the class of the highest mean probability.
    counts = np.zeros((6, 6), dtype=int)
    for x, y, f in zip(a, b, fused):
        mean = [(float(x[f"prob_{c}"]) + float(y[f"prob_{c}"])) / 2 for c in CLASSES]
        assert f["predicted"] == CLASSES[int(np.argmax(mean))]
        assert max(abs(float(f[f"prob_{c}"]) - m) for c, m in zip(CLASSES, mean)) < 1e-5
        counts[CLASSES.index(f["true"]), CLASSES.index(f["predicted"])] += 1
    assert results["test/uar"] == pytest.approx(float(scores(counts)["uar"]), abs=1e-6)
    assert results["confusion_matrix"] == counts.tolist() and results["n_test"] == len(fused)
    assert results["schema"] == json.loads((two_runs / "cnn" / "results.json").read_text())["schema"]
    assert "test/uar_ci95" in results and set(results["per_speaker_confusion"]) == {r["speaker"] for r in fused}
    assert set(results["fusion"]["paired"]) == {str(two_runs / "cnn"), str(two_runs / "lstm")}
    for test in results["fusion"]["paired"].values():
        assert test["ci95"][0] <= test["difference"] <= test["ci95"][1] and 0 <= test["p"] <= 1
    assert "UAR" in proc.stdout and (out / "split.csv").read_bytes() == (two_runs / "cnn" / "split.csv").read_bytes()

    # Members that batched their test clips in another order are matched clip by clip.
    shuffled = two_runs / "lstm_shuffled"
    shutil.copytree(two_runs / "lstm", shuffled)
    lines = (shuffled / "test_predictions.csv").read_text().splitlines()
    (shuffled / "test_predictions.csv").write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    again = fuse([two_runs / "cnn", shuffled], two_runs / "again")
    assert again["confusion_matrix"] == results["confusion_matrix"]
    assert [r["path"] for r in read_predictions(two_runs / "again")] == [r["path"] for r in a]

    weighted = fuse([two_runs / "cnn", two_runs / "lstm"], two_runs / "weighted", weighting="validation")
    vals = [json.loads((two_runs / n / "results.json").read_text())["val/uar_best"] for n in ("cnn", "lstm")]
    assert weighted["fusion"]["weights"] == pytest.approx([v / sum(vals) for v in vals])


def test_runs_of_another_split_are_refused_in_one_paragraph(two_runs, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ser.evidence.fuse", str(two_runs / "cnn"), str(two_runs / "other"),
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "split file" in proc.stderr and str(two_runs / "other") in proc.stderr and "\n\n" not in proc.stderr.strip()
    assert not (tmp_path / "out").exists()
    with pytest.raises(FusionRefused, match="at least two"):
        fuse([two_runs / "cnn"], tmp_path / "one")


@settings(max_examples=40, deadline=None)
@given(clips=st.integers(1, 30), members=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_fusing_identical_members_gives_back_their_answers(clips, members, seed):
    """The written probabilities read back are the model's, and a fusion of copies of one model
    is that model, whatever the number of clips and members."""
    task = CategoricalTask(CLASSES)
    rng = np.random.default_rng(seed)
    logits, targets = rng.normal(0, 3, (clips, 6)), rng.integers(0, 6, clips)
    columns = task.prediction_columns(logits, targets)
    read = [dict(zip(columns, values)) for values in zip(*columns.values())]
    outputs, read_targets = task.outputs_from_columns([{k: str(v) for k, v in r.items()} for r in read])
    assert (read_targets == targets).all() and (outputs.argmax(-1) == logits.argmax(-1)).all()
    fused = task.fuse([outputs] * members, [1 / members] * members)
    np.testing.assert_allclose(np.exp(fused), np.exp(outputs), atol=1e-5)  # the file keeps 6 digits


def test_ser_predict_with_several_models_answers_their_mean(two_runs, capsys):
    """ser-predict --ckpt A --ckpt B: each window's and each file's probabilities are the mean of
    what A and B answer alone for the same call (one speaker's test files)."""
    from ser.serving.predict import main as ser_predict

    split = list(csv.DictReader(open(two_runs / "cnn" / "split.csv", newline="")))
    speaker = next(r["speaker"] for r in split if r["split"] == "test")
    files = [r["path"] for r in split if r["split"] == "test" and r["speaker"] == speaker][:5]
    ckpts = [str(two_runs / name / "checkpoints" / "last.ckpt") for name in ("cnn", "lstm")]

    def lines(*args):  # in this process: the models load as in ser-predict's
        assert ser_predict([*args, "--window", "1.5", *files]) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    alone = [lines("--ckpt", c) for c in ckpts]
    fused = lines("--ckpt", ckpts[0], "--ckpt", ckpts[1])
    assert [f["path"] for f in fused] == files
    for f, a, b in zip(fused, *alone):
        for x, y, z in [(f, a, b), *zip(f["windows"], a["windows"], b["windows"])]:
            mean = {c: (y["probs"][c] + z["probs"][c]) / 2 for c in CLASSES}
            assert max(abs(x["probs"][c] - mean[c]) for c in CLASSES) < 2e-6
            assert x["emotion"] == max(mean, key=mean.get)
    with pytest.raises(SystemExit) as stopped:
        ser_predict(["--ckpt", ckpts[0], "--ckpt", ckpts[1], "--stream", "-"])
    assert stopped.value.code == 2 and "one model" in capsys.readouterr().err
