"""sweep.py without W&B credentials: W&B's open-source engine, offline W&B runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, SMALL

TRIAL = [*SMALL, "debug=limit"]


def sweep(tmp_path, parameters, method="grid", count=None):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"method": method, "metric": {"name": "val/uar_best", "goal": "maximize"},
                                      "parameters": parameters}))
    args = [sys.executable, "sweep.py", "--config", str(config), "--out", str(tmp_path / "sweep"), *TRIAL]
    if count:
        args[2:2] = ["--count", str(count)]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_local_sweep_runs_trials_as_offline_wandb_runs(offline_wandb, tmp_path):
    proc = sweep(tmp_path, {"model.optimizer.lr": {"values": [0.001, 0.0003]}})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = json.loads((tmp_path / "sweep" / "sweep_results.json").read_text())
    assert [t["state"] for t in trials] == ["finished", "finished"]
    assert sorted(t["params"]["model.optimizer.lr"] for t in trials) == [0.0003, 0.001]
    for t in trials:
        runs = list((tmp_path / "sweep" / t["trial"] / "wandb").glob("offline-run-*"))
        assert len(runs) == 1
        # the offline run's record file (protobuf) holds the logged metric names verbatim
        records = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
        assert b"val/uar" in records and b"test/uar" in records
    assert "ranked by val/uar_best" in proc.stdout


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(offline_wandb, tmp_path):
    proc = sweep(tmp_path, {"model.optimizer.lr": {"values": ["not_a_number", 0.001]}})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = json.loads((tmp_path / "sweep" / "sweep_results.json").read_text())
    assert [t["state"] for t in trials] == ["failed", "finished"]
    assert trials[1]["val/uar_best"] is not None
    assert "1 finished, 1 failed" in proc.stdout


def test_the_engine_lives_apart_and_ser_keeps_numpy_2():
    import numpy

    from ser.experiment.sweep_engine import engine_python, next_params

    assert int(numpy.__version__.split(".")[0]) >= 2  # not held back by the engine's pin
    engine_numpy = subprocess.run([str(engine_python()), "-c", "import numpy; print(numpy.__version__)"],
                                  capture_output=True, text=True, check=True).stdout
    assert engine_numpy.startswith("1.")
    grid = {"method": "grid", "metric": {"name": "x"}, "parameters": {"a": {"values": [1, 2]}}}
    history, seen = [], []
    while (params := next_params(grid, history)) is not None:
        seen.append(params["a"])
        history.append({"name": f"t{len(seen)}", "config": {"a": {"value": params["a"]}},
                        "summary_metrics": {}, "state": "failed"})
    assert seen == [1, 2]


def test_an_engine_that_cannot_be_installed_is_one_clear_error(tmp_path, monkeypatch):
    from ser.errors import UserError
    from ser.experiment import sweep_engine

    monkeypatch.setenv("SER_SWEEPS_ENV", str(tmp_path / "engine"))
    monkeypatch.setattr(sweep_engine, "REQUIREMENT", "ser-test-no-such-package==0.0.0")
    with pytest.raises(UserError, match="SER_SWEEPS_ENV") as err:
        sweep_engine.engine_python()
    assert str(tmp_path / "engine") in str(err.value)
    assert not (tmp_path / "engine").exists() and not (tmp_path / "engine.partial").exists()
