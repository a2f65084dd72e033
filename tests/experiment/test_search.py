"""Multiruns and Optuna searches: one W&B run per job, the searched metric in every run."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, SMALL
from wandb_runs import offline_runs

QUICK = [*SMALL, "debug=limit"]
SEARCH = ["hparams_search=optuna", "hydra.sweeper.sampler.n_startup_trials=2"]


def multirun(args: list[str], sweep_dir, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", "-m", *args, f"hydra.sweep.dir={sweep_dir}"],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_each_job_of_a_multirun_is_its_own_wandb_run(offline_wandb, tmp_path):
    proc = multirun(["model=cnn,lstm", *QUICK, "logger=wandb"], tmp_path / "sweep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, model in ((0, "ser.models.cnn.BaseCNN"), (1, "ser.models.lstm.LSTMClassifier")):
        (run,) = offline_runs(tmp_path / "sweep" / str(job) / "wandb")
        assert run.config["model"]["net"]["_target_"] == model
        assert run.group == "sweep" and run.exit_code == 0
        epochs = [row["epoch"] for row in run.history if "val/uar" in row]
        assert epochs == [0, 1]  # debug=limit: two epochs, this job's alone
        # the config file on disk is the one W&B received (tags added before it is written)
        on_disk = yaml.safe_load((tmp_path / "sweep" / str(job) / "config.yaml").read_text())
        assert on_disk["tags"] == run.config["tags"] and on_disk["logger"]["wandb"]["group"] == "sweep"


def test_an_optuna_search_leaves_one_wandb_run_per_trial_in_one_group(offline_wandb, tmp_path):
    proc = multirun([*SEARCH, "hydra.sweeper.n_trials=3", *QUICK, "logger=wandb"], tmp_path / "search")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = offline_runs(tmp_path / "search")
    assert len(runs) == 3 and {run.group for run in runs} == {"search"}
    rates = [run.config["model"]["optimizer"]["lr"] for run in runs]
    assert len(set(rates)) == 3  # each run holds its own trial's config
    best = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    returned = [json.loads((tmp_path / "search" / str(i) / "results.json").read_text())["val/uar_best"]
                for i in range(3)]
    assert best["best_value"] == pytest.approx(max(returned)) and best["n_complete"] == 3


def test_a_fast_dev_run_search_completes_with_the_modules_running_best(cache_dir, tmp_path):
    proc = multirun([*SEARCH, "hydra.sweeper.n_trials=3", *SMALL, "logger=csv", "++trainer.fast_dev_run=true"],
                    tmp_path / "search")
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    assert best["n_complete"] == 3 and 0 <= best["best_value"] <= 1
    assert set(best["best_params"]) == {"model.optimizer.lr", "model.optimizer.weight_decay", "data.batch_size"}


def test_a_search_whose_trials_all_fail_ends_in_one_paragraph(cache_dir, tmp_path):
    proc = multirun([*SEARCH, "hydra.sweeper.n_trials=2", *QUICK, "logger=csv",
                     "hydra.sweeper.params={model.optimizer.lr:'choice(-1.0,-2.0)'}"], tmp_path / "search")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    message = proc.stderr[proc.stderr.index("error: "):].strip()
    assert "\n\n" not in message  # one paragraph
    assert "all 2 trials failed" in message and "ConfigError (first in trial 0)" in message
    assert "learning rate" in message and str(tmp_path / "search") in message
    best = yaml.safe_load((tmp_path / "search" / "optimization_results.yaml").read_text())
    assert best["n_failed"] == 2 and "best_value" not in best


def test_a_job_that_crashes_still_closes_its_wandb_run_marked_failed(offline_wandb, tmp_path):
    import wandb

    from ser.experiment.tracking import closing_runs

    for crash in (False, True):
        with pytest.raises(RuntimeError) if crash else contextlib.nullcontext(), closing_runs():
            wandb.init(mode="offline", dir=str(tmp_path / str(crash)), project="ser")
            wandb.log({"epoch": 0})
            if crash:
                raise RuntimeError("mid-epoch")
        assert wandb.run is None  # closed: the next job of this process starts its own
    wandb.teardown()  # this process's W&B service: later tests start processes of their own
    assert [run.exit_code for run in offline_runs(tmp_path / "False")] == [0]
    assert [run.exit_code for run in offline_runs(tmp_path / "True")] == [1]


def test_two_workers_on_one_study_add_up_to_n_trials(cache_dir, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [*SEARCH, "hydra.sweeper.n_trials=4", f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=shared", *SMALL, "logger=csv", "++trainer.fast_dev_run=true"]
    workers = [subprocess.Popen([sys.executable, "train.py", "-m", *args, f"hydra.sweep.dir={tmp_path / f'w{i}'}"],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    for worker in workers:
        assert worker.wait(timeout=900) == 0, worker.stderr.read()[-3000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    done = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert len(done) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in done)
    jobs = sum(1 for w in range(2) for _ in (tmp_path / f"w{w}").glob("*/results.json"))
    assert jobs == 4  # no trial ran twice, none was lost
    # the same command again continues the finished study: nothing more to run
    again = multirun(args, tmp_path / "again")
    assert again.returncode == 0 and not list((tmp_path / "again").glob("*/results.json"))


def test_search_space_syntax_becomes_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from ser.experiment.search import search_space

    space, fixed = search_space(["a=choice(16,32)", "b=tag(log, interval(1e-4, 1e-2))", "c=interval(0, 10)",
                                 "d=range(1, 5)", "e=range(0.0, 1.0, 0.25)", "f=7"])
    assert space["a"] == CategoricalDistribution([16, 32])
    assert space["b"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert space["c"] == FloatDistribution(0.0, 10.0)  # Hydra's interval is always a float range
    assert space["d"] == IntDistribution(1, 4)  # range's stop is excluded
    assert space["e"] == FloatDistribution(0.0, 0.75, step=0.25)
    assert fixed == {"f": "7"}


def test_hopeless_trials_are_pruned_on_val_uar(cache_dir, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    # Anything below a UAR of 1.01 is hopeless after the first epoch's report.
    proc = multirun([*SEARCH, "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={storage}", *QUICK, "logger=csv",
                     "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:1.01,n_warmup_steps:1}"],
                    tmp_path / "search")
    assert proc.returncode == 1 and "2 were pruned" in proc.stderr  # no trial left to be best
    trials = optuna.load_study(study_name="ser", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(sorted(t.intermediate_values) == [0, 1] for t in trials)  # val/uar after each epoch
    assert not list((tmp_path / "search").glob("*/results.json"))  # stopped before testing
