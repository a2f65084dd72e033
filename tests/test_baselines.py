"""The eGeMAPS reference baseline (model=egemaps_linear|egemaps_mlp): openSMILE functionals
computed once per clip into the cache, and a run that beats chance."""

from __future__ import annotations

import csv
import json
import logging

import torch
import yaml

from conftest import SMALL, predict_cli, train_here


def test_the_functionals_are_cached_once_and_the_baseline_beats_chance(cache_dir, tmp_path, caplog):
    args = [*SMALL, "logger=csv", "trainer.max_epochs=20", f"data.cache_dir={tmp_path / 'cache'}"]
    with caplog.at_level(logging.INFO):
        results = train_here(["model=egemaps_mlp", *args], tmp_path / "mlp")
    assert "inputs: openSMILE eGeMAPSv02 functionals, computed once" in caplog.text
    indexes = list((tmp_path / "cache" / "features").glob("*.json"))
    assert len(indexes) == 1 and json.loads(indexes[0].read_text())["width"] == 88
    assert results["test/uar"] > 1.5 / results["num_classes"], results["test/uar"]  # chance: 1/6
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train_here(["model=egemaps_linear", *args, "trainer.max_epochs=2"], tmp_path / "linear")
    assert "Computing" not in caplog.text and "functionals, computed once" in caplog.text  # the same functionals
    assert len(list((tmp_path / "cache" / "features").glob("*.json"))) == 1


def test_what_opensmile_cannot_measure_is_zero_and_said_never_nan(caplog):
    from ser.frontends.functionals import EgemapsFrontend

    frontend = EgemapsFrontend()
    feats, frames = frontend(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 400]))  # 25 ms: too short
    assert feats.shape == (2, 88, 1) and frames.tolist() == [1, 1]
    assert torch.isfinite(feats).all() and "could not measure 1 of 2 clips" in caplog.text


def test_the_default_recipe_normalises_functionals_per_speaker_and_ser_predict_does_as_the_test_did(
        train_cli, tmp_path):
    """The default (model=egemaps_mlp, each functional standardised over each speaker's clips):
    ser-predict given all of one test speaker's files takes them as that speaker's and predicts
    what the test step predicted for them; one file alone is scored with the pooled training
    statistics, and says so."""
    train_cli([*SMALL, "logger=csv", "trainer.max_epochs=15"], tmp_path)
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert cfg["model"]["net"]["_target_"] == "ser.models.functionals.FunctionalsClassifier"
    assert cfg["features"]["normalize"] == "speaker"
    assert "functionals, computed once, normalised per speaker" in (tmp_path / "train.log").read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test/uar"] > 2 / results["num_classes"], results["test/uar"]
    with open(tmp_path / "split.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == "test"]
    speaker = rows[0]["speaker"]
    clips = [r for r in rows if r["speaker"] == speaker]
    proc = predict_cli("--ckpt", tmp_path / "checkpoints" / "last.ckpt", *[r["path"] for r in clips])
    assert proc.returncode == 0, proc.stderr
    assert f"the {len(clips)} windows of these {len(clips)} files are taken as one speaker's" in proc.stderr
    predicted = [json.loads(line)["emotion"] for line in proc.stdout.splitlines()]
    classes = results["classes"]
    confusion = [[0] * len(classes) for _ in classes]
    for clip, emotion in zip(clips, predicted):
        confusion[classes.index(clip["emotion"])][classes.index(emotion)] += 1
    assert confusion == results["per_speaker_confusion"][speaker]
    alone = predict_cli("--ckpt", tmp_path / "checkpoints" / "last.ckpt", clips[0]["path"])
    assert alone.returncode == 0 and "pooled statistics" in alone.stderr and len(alone.stdout.splitlines()) == 1


def test_functionals_on_every_core_are_the_ones_of_one_thread():
    """openSMILE runs a clip per thread, each with its own instance: the same numbers, in order."""
    from ser.frontends.functionals import EgemapsFrontend

    waves = torch.randn(6, 20000) * 0.1
    lengths = torch.tensor([20000, 16000, 9000, 20000, 12000, 5000])
    one, _ = EgemapsFrontend(threads=1)(waves, lengths)
    many, _ = EgemapsFrontend(threads=3)(waves, lengths)
    assert torch.equal(one, many)
