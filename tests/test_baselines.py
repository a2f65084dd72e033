"""The eGeMAPS reference baseline (model=egemaps_linear|egemaps_mlp): openSMILE functionals
computed once per clip into the cache, and a run that beats chance."""

from __future__ import annotations

import json

import torch

from conftest import SMALL


def test_the_functionals_are_cached_once_and_the_baseline_beats_chance(train_cli, tmp_path):
    args = [*SMALL, "logger=csv", "trainer.max_epochs=20", f"data.cache_dir={tmp_path / 'cache'}"]
    train_cli(["model=egemaps_mlp", *args], tmp_path / "mlp")
    log = (tmp_path / "mlp" / "train.log").read_text()
    assert "inputs: openSMILE eGeMAPSv02 functionals, computed once" in log
    indexes = list((tmp_path / "cache" / "features").glob("*.json"))
    assert len(indexes) == 1 and json.loads(indexes[0].read_text())["width"] == 88
    results = json.loads((tmp_path / "mlp" / "results.json").read_text())
    assert results["test/uar"] > 1.5 / results["num_classes"], results["test/uar"]  # chance: 1/6
    train_cli(["model=egemaps_linear", *args, "trainer.max_epochs=2"], tmp_path / "linear")
    assert "Computing" not in (tmp_path / "linear" / "train.log").read_text()  # the same functionals
    assert len(list((tmp_path / "cache" / "features").glob("*.json"))) == 1


def test_what_opensmile_cannot_measure_is_zero_and_said_never_nan(caplog):
    from ser.features import EgemapsFrontend

    frontend = EgemapsFrontend()
    feats, frames = frontend(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 400]))  # 25 ms: too short
    assert feats.shape == (2, 88, 1) and frames.tolist() == [1, 1]
    assert torch.isfinite(feats).all() and "could not measure 1 of 2 clips" in caplog.text
