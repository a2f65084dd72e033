"""Optuna searches over train.py as a Hydra sweeper, on a current Optuna.

``hydra-optuna-sweeper`` pins ``optuna<3`` (2021): installing it downgrades a current Optuna
and its failure path ends a search whose trials all failed in a traceback. This sweeper keeps
its config format (``hydra.sweeper.params`` with ``choice``/``interval``/``range``/
``tag(log, ...)``, ``sampler``, ``direction``, ``storage``, ``study_name``, ``n_trials``,
``n_jobs``) and drives Optuna's ask-and-tell:

- ``n_trials`` counts the trials of the *study*, so a study in shared storage (SQLite on one
  machine, a journal file or an RDB for many) continues where it stopped, and several workers
  on one study stop together once their trials add up to ``n_trials``;
- each trial is one job of Hydra's launcher (basic, joblib, SLURM), ``n_jobs`` at a time;
- a failed trial is recorded as failed with its error, and the search goes on; a search in
  which no trial completes ends with one paragraph and a non-zero exit code;
- with ``pruner`` set (any ``optuna.pruners`` class), each trial reports ``val/uar`` after
  every validation and stops once the pruner calls it hopeless (:class:`PruneHopeless`).
  Trials may run in other processes (joblib, SLURM), so they reach the study through its
  storage: without one, the study is kept in ``<sweep dir>/optuna.db``.

Hydra only instantiates sweepers under ``hydra_plugins``; ``hydra_plugins/ser_search`` names
this class there.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def distribution(override: Override) -> BaseDistribution | str:
    """One ``key=...`` sweep override as an Optuna distribution (a plain value stays fixed)."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():  # range(start, stop, step): stop excluded, as in Python
        if any(isinstance(v, float) for v in (value.start, value.stop, value.step)):
            steps = math.floor((value.stop - value.start) / value.step - 1e-9)
            return FloatDistribution(value.start, value.start + steps * value.step, step=value.step)
        return IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step))
    # interval(low, high), optionally tag(log, ...): Hydra parses its ends as floats (integer
    # searches use range(...))
    return FloatDistribution(float(value.start), float(value.end), log="log" in value.tags)


def search_space(arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """Hydra override strings -> (searched distributions, fixed overrides)."""
    space, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(list(arguments)):
        found = distribution(override)
        target = space if isinstance(found, BaseDistribution) else fixed
        target[override.get_key_element()] = found
    return space, fixed


class OptunaSearch:
    def __init__(self, sampler: optuna.samplers.BaseSampler | None = None, direction: str = "maximize",
                 storage: str | None = None,
                 study_name: str | None = None, n_trials: int = 20, n_jobs: int = 1,
                 params: DictConfig | None = None, pruner: optuna.pruners.BasePruner | None = None,
                 **ignored: Any):
        if ignored:
            log.warning("hydra.sweeper: ignoring %s (not used by ser's Optuna sweeper)", sorted(ignored))
        self.sampler, self.direction, self.storage = sampler, direction, storage
        self.study_name, self.n_trials, self.n_jobs = study_name, int(n_trials), max(1, int(n_jobs))
        self.params = params or {}
        self.pruner = pruner

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        space, fixed = search_space([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        for key in fixed.keys() & space.keys():
            del fixed[key]
        sampler, pruner = self.sampler, self.pruner  # (Hydra built both with the sweeper)
        storage = self.storage
        if pruner is not None and storage is None:  # trials in other processes must reach it
            self.sweep_dir.mkdir(parents=True, exist_ok=True)
            storage = f"sqlite:///{(self.sweep_dir / 'optuna.db').resolve()}"
        study = open_study(study_name=self.study_name or "ser", storage=storage, sampler=sampler,
                           pruner=pruner, direction=self.direction)
        failures: list[tuple[int, BaseException | str]] = []
        job_idx = 0
        while True:
            trials = self._ask(study, space)
            if not trials:
                break
            overrides = [tuple(f"{k}={v}" for k, v in {**t.params, **fixed}.items())
                         + (self._reporting(storage, study, t) if pruner is not None else ()) for t in trials]
            returns = self.launcher.launch(overrides, initial_job_idx=job_idx)
            job_idx += len(returns)
            for trial, job in zip(trials, returns):
                self._tell(study, trial, job, failures)
        self._report(study, failures)

    @staticmethod
    def _reporting(storage: str, study: optuna.Study, trial: optuna.Trial) -> tuple[str, ...]:
        """Overrides that tell a trial where to report val/uar (read by ser/experiment/train.py)."""
        return (f"++search.storage='{storage}'", f"++search.study_name='{study.study_name}'",
                f"++search.trial={trial.number}")

    def _ask(self, study: optuna.Study, space: dict) -> list[optuna.Trial]:
        """Up to n_jobs new trials, none numbered past n_trials (other workers ask too)."""
        trials = []
        for _ in range(self.n_jobs):
            if len(study.get_trials(deepcopy=False)) >= self.n_trials:
                break
            trial = study.ask(space)
            if trial.number >= self.n_trials:
                # Another worker took the last places between our count and this ask.
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                break
            trials.append(trial)
        return trials

    def _tell(self, study, trial, job, failures: list) -> None:
        try:
            value = job.return_value  # re-raises the trial's exception
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            return
        except Exception as err:  # noqa: BLE001 - any error of a trial fails that trial only
            failures.append((trial.number, err))
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:500])
            study.tell(trial, state=TrialState.FAIL)
            return
        if value is None or not math.isfinite(float(value)):
            failures.append((trial.number, f"returned {value!r} instead of the searched metric"))
            study.tell(trial, state=TrialState.FAIL)
            return
        study.tell(trial, float(value))

    def _report(self, study: optuna.Study, failures: list) -> None:
        ours = [t for t in study.trials if not t.user_attrs.get("surplus")]
        complete = [t for t in ours if t.state == TrialState.COMPLETE]
        failed = [t for t in ours if t.state == TrialState.FAIL]
        pruned = [t for t in ours if t.state == TrialState.PRUNED]
        results: dict = {"name": "optuna", "study_name": study.study_name, "direction": self.direction,
                         "n_trials": len(ours), "n_complete": len(complete), "n_failed": len(failed),
                         "n_pruned": len(pruned)}
        if complete:
            results.update(best_params=study.best_trial.params, best_value=study.best_trial.value)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")
        if complete:
            log.info("Best of %d trials (%d failed): %s = %s", len(ours), len(failed),
                     study.best_trial.params, study.best_trial.value)
            return
        print(f"\nerror: {all_failed_paragraph(len(ours), len(pruned), failures, self.sweep_dir)}\n", file=sys.stderr)
        sys.exit(1)


def open_study(**kwargs) -> optuna.Study:
    """``optuna.create_study(load_if_exists=True)``, tried again while another worker starting at
    the same moment creates the storage's tables (on a new SQLite or RDB storage the second one
    fails on alembic's version row; seen with two workers on one SQLite file)."""
    for attempt in range(10):
        try:
            return optuna.create_study(load_if_exists=True, **kwargs)
        except Exception as err:  # noqa: BLE001 - sqlalchemy's IntegrityError / OperationalError
            if type(err).__module__.split(".")[0] != "sqlalchemy" or attempt == 9:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def all_failed_paragraph(n_trials: int, n_pruned: int, failures: list, sweep_dir: Path) -> str:
    """One paragraph: how many trials, the first error of each kind, where the logs are."""
    first_of_kind: dict[str, tuple[int, str]] = {}
    for number, err in failures:
        kind = type(err).__name__ if isinstance(err, BaseException) else "no result"
        first_of_kind.setdefault(kind, (number, str(err).strip().splitlines()[0] if str(err).strip() else kind))
    errors = "; ".join(f"{kind} (first in trial {n}): {message}" for kind, (n, message) in first_of_kind.items())
    outcome = f"all {n_trials} trials failed" if not n_pruned else f"of {n_trials} trials {n_pruned} were pruned, the rest failed"
    return (f"the Optuna search ended with no completed trial: {outcome}. "
            f"{errors or 'No errors were recorded by this worker.'} Each trial's log is "
            f"{sweep_dir}/<job number>/train.log; the study's state is in "
            f"{sweep_dir}/optimization_results.yaml.")


class PruneHopeless(Callback):
    """In a trial of a search with a pruner: report ``metric`` (the task's headline, val/uar or
    val/ccc) to the study after each validation, and stop the trial once the pruner calls it
    hopeless (``optuna.TrialPruned``, which the sweeper records as pruned)."""

    def __init__(self, storage: str, study_name: str, trial: int, pruner: optuna.pruners.BasePruner,
                 metric: str = "val/uar"):
        self.metric = metric
        # A study loaded from storage does not bring its pruner: the sweeper's own is passed in.
        study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
        trial_id = next(t._trial_id for t in study.get_trials(deepcopy=False) if t.number == trial)
        self.trial = optuna.Trial(study, trial_id)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        self.trial.report(float(trainer.callback_metrics[self.metric]), step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {trainer.current_epoch}")
