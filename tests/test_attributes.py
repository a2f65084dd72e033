"""Emotion as attributes (task=attributes|both): the CCC, its loss and intervals, the built-in
corpus's ratings, and a run that reports, predicts and plots them."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from conftest import REPO, SMALL, predict_cli


def challenge_ccc(true: np.ndarray, pred: np.ndarray) -> float:
    """The CCC as the MSP-Podcast challenge's scoring script computes it (numpy, population)."""
    correlation = np.corrcoef(true, pred)[0][1]
    numerator = 2 * correlation * np.std(true) * np.std(pred)
    return numerator / (np.var(true) + np.var(pred) + (np.mean(true) - np.mean(pred)) ** 2)


def test_ccc_is_the_challenges_from_speaker_sums_and_batches_and_the_loss_is_one_minus_it():
    from ser.metrics import attribute_metrics, attribute_sums, ccc_loss, ccc_of_sums

    rng = np.random.default_rng(0)
    true = rng.uniform(0, 1, (200, 3))
    pred = 0.6 * true + rng.normal(0, 0.15, (200, 3)) + 0.1
    expected = np.array([challenge_ccc(true[:, i], pred[:, i]) for i in range(3)])
    by_speaker = [attribute_sums(pred[i::4], true[i::4]) for i in range(4)]  # sums add up over speakers
    np.testing.assert_allclose(ccc_of_sums(sum(by_speaker)), expected, rtol=1e-9)
    metrics = attribute_metrics("test/")
    for start in range(0, 200, 32):  # batch by batch, as the test step updates them
        metrics.update(torch.tensor(pred[start : start + 32]), torch.tensor(true[start : start + 32]))
    scores = metrics.compute()
    assert float(scores["test/ccc"]) == pytest.approx(expected.mean(), rel=1e-6)
    assert float(scores["test/ccc_valence"]) == pytest.approx(expected[1], rel=1e-6)
    loss = ccc_loss(torch.tensor(pred), torch.tensor(true))
    assert float(loss) == pytest.approx(1 - expected.mean(), rel=1e-6)
    assert float(ccc_loss(torch.tensor(true), torch.tensor(true))) == pytest.approx(0, abs=1e-6)


def test_macro_f1_is_scikit_learns_over_every_class_seen_in_truth_or_prediction():
    """The Odyssey 2024 challenge scores f1_score(average="macro"): a class predicted but never
    true counts with F1 0; a class neither true nor predicted does not count."""
    from ser.metrics import classification_metrics

    true = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 3])  # class 3 predicted once, never true; class 4 nowhere
    f1 = float(classification_metrics(5, "test/")(pred, true)["test/macro_f1"])
    by_hand = np.mean([2 / 3, 0.8, 2 / 3, 0.0])  # classes 0, 1, 2, 3
    assert f1 == pytest.approx(by_hand)


def test_the_built_in_corpus_rates_each_clip_by_its_emotion_and_how_strongly_it_was_acted(compose_cfg):
    from hydra.utils import instantiate

    from ser.data.synthetic import make_voice

    corpus = instantiate(compose_cfg(SMALL).data.corpus)
    root = compose_cfg(SMALL).data.root
    corpus.prepare(root)
    clips, _ = corpus.scan(root)
    assert all(c.attributes is not None and all(0 <= v <= 1 for v in c.attributes) for c in clips)
    neutral = {c.attributes for c in clips if c.emotion == "neutral"}
    assert neutral == {(0.5, 0.5, 0.5)}
    anger = [c for c in clips if c.emotion == "anger"]
    arousal = {c.speaker: c.attributes[0] for c in anger}
    # The more expressive the speaker, the further from neutral: higher arousal in anger.
    expressive = sorted(arousal, key=lambda s: make_voice(int(s) - 1001, 0).expressiveness)
    assert arousal[expressive[0]] < arousal[expressive[-1]]
    sad = [c for c in clips if c.emotion == "sadness"]
    assert max(c.attributes[1] for c in sad) < 0.5 < min(c.attributes[1] for c in clips if c.emotion == "happiness")


def test_the_task_config_sets_what_callbacks_and_searches_watch(compose_cfg):
    cfg = compose_cfg(["task=attributes", "hparams_search=optuna"])
    assert cfg.optimized_metric == "val/ccc_best"
    assert cfg.callbacks.model_checkpoint.monitor == "val/ccc" and cfg.callbacks.early_stopping.monitor == "val/ccc"
    assert compose_cfg([]).callbacks.model_checkpoint.monitor == "val/uar"


@pytest.mark.slow
def test_an_attribute_run_reports_intervals_plots_predicts_and_reports(train_cli, offline_wandb, tmp_path):
    import subprocess
    import sys

    from wandb_runs import offline_runs

    run = tmp_path / "run"
    train_cli([*SMALL, "task=attributes", "model=cnn_gru", "logger=wandb", "trainer.max_epochs=4"], run)
    (logged,) = offline_runs(run / "wandb")  # what W&B received, read back from its own files
    keys = {key for row in logged.history for key in row}
    assert {"val/ccc", "val/ccc_arousal", "val/ccc_best", "train/ccc"} <= keys
    assert any(key.startswith("test/attributes_image/") for key in keys)  # the figure, as W&B stores an image
    results = json.loads((run / "results.json").read_text())
    assert results["task"] == "attributes" and results["headline"] == "test/ccc"
    assert results["attributes"] == ["arousal", "valence", "dominance"] and results["scale"] == [1.0, 5.0]
    for key in ("test/ccc", "test/ccc_arousal", "test/ccc_valence", "test/ccc_dominance"):
        low, high = results[f"{key}_ci95"]
        assert -1 <= low <= results[key] <= high <= 1
    assert "val/ccc_best" in results and "confusion_matrix" not in results
    with open(run / "test_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == results["n_test"] and {"true_arousal", "predicted_valence"} <= set(rows[0])
    assert (run / "attributes.png").is_file()
    # The checkpoint knows the built-in corpus's 1-5 scale (handed over with the training split).
    speaker_clips = [r["path"] for r in rows if r["speaker"] == rows[0]["speaker"]]
    proc = predict_cli("--ckpt", run / "checkpoints" / "last.ckpt", *speaker_clips)
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout.splitlines()[0])
    assert set(first["attributes"]) == {"arousal", "valence", "dominance"} and first["scale"] == [1.0, 5.0]
    assert first["attributes_on_scale"]["arousal"] == pytest.approx(1 + 4 * first["attributes"]["arousal"], abs=2e-3)
    # Given the speaker's files, ser-predict answers what the test step did for them.
    predicted = {r["path"]: float(r["predicted_arousal"]) for r in rows}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        assert row["attributes"]["arousal"] == pytest.approx(predicted[row["path"]], abs=1e-3)
    report = subprocess.run([sys.executable, "-m", "ser.evidence.report", str(run)], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    text = (run / "report.md").read_text()
    assert "Attributes: predicted against true" in text and "ccc" in text


def test_a_folder_manifest_may_carry_attributes_and_leave_the_emotion_empty(tmp_path):
    from ser.data.corpora import Folder

    from corpora_fixtures import speech, write

    for name in ("a.wav", "b.wav", "c.wav"):
        write(tmp_path / name, speech(1, "anger", 0, 16000), 16000)
    (tmp_path / "manifest.csv").write_text("path,emotion,speaker,arousal,valence,dominance\n"
                                          "a.wav,angry,s1,5,1,4\n"  # a category and ratings
                                          "b.wav,,s1,3,3,3\n"  # ratings alone
                                          "c.wav,,s2,,,\n")  # neither: skipped, said why
    clips, skipped = Folder(manifest=str(tmp_path / "manifest.csv"), attribute_scale=(1, 5)).scan(tmp_path)
    assert [(c.emotion, c.attributes) for c in clips] == [("anger", (1.0, 0.0, 0.75)), (None, (0.5, 0.5, 0.5))]
    assert skipped == [(str((tmp_path / "c.wav").resolve()), "neither an emotion nor arousal, valence and dominance")]


def test_a_corpus_with_nothing_the_task_can_learn_from_is_one_paragraph(train_cli, tmp_path):
    import subprocess
    import sys

    from corpora_fixtures import iemocap

    root = iemocap(tmp_path / "IEMOCAP_full_release")
    proc = subprocess.run([sys.executable, "train.py", "data=iemocap", f"data.root={root}", "data.emotions=[fear,surprise]",
                           f"data.cache_dir={tmp_path / 'cache'}", "logger=csv"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "has a category of data.emotions=['fear', 'surprise']" in proc.stderr
    assert not (tmp_path / "cache" / "waveforms").exists()  # nothing decoded
