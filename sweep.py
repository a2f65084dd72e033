"""W&B sweeps over train.py, with or without a W&B account.

    python sweep.py --config sweeps/cnn_family.yaml [--count N] [hydra overrides ...]

The sweep file is a standard W&B sweep configuration (method grid/random/bayes, metric,
parameters) whose parameter names are Hydra keys (``model``, ``model.optimizer.lr``...).
With W&B credentials the sweep is created on W&B and a W&B agent runs the trials, each an
ordinary ``train.py`` run. Without them the same sweep runs here, proposed by W&B's
open-source engine (the ``sweeps`` package, kept in an environment of its own: see
``ser/experiment/sweep_engine.py``), every trial logged as an offline W&B run.
Either way a trial that crashes is recorded as failed and the sweep goes on, and a ranked
table of the trials is printed at the end (and written to ``sweep_results.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent


def hydra_value(value) -> str:
    """A sweep value written as a Hydra override value."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        return repr(float(value))
    return str(value)


def default_count(config: dict) -> int | None:
    return None if config.get("method") == "grid" else 10


def run_trial(params: dict, overrides: list[str], run_dir: Path, group: str) -> tuple[str, dict]:
    """Run train.py for one point of the search; returns (state, results)."""
    args = [f"{key}={hydra_value(value)}" for key, value in params.items()]
    args += [*overrides, f"hydra.run.dir={run_dir}", f"logger.wandb.group={group}"]
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "trial.log", "w") as log:
        code = subprocess.call([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ, "SER_GROUP": group})
    from ser.evidence import results

    path = run_dir / results.FILE
    if code != 0 or not path.is_file():
        return "failed", {}
    return "finished", results.read(path)


def local_sweep(config: dict, count: int | None, overrides: list[str], out: Path) -> list[dict]:
    """Propose trials with W&B's open-source engine and run them one after another here."""
    from ser.experiment.sweep_engine import next_params

    metric = config["metric"]["name"]
    history: list[dict] = []
    trials: list[dict] = []
    while count is None or len(trials) < count:
        params = next_params(config, history)
        if params is None:  # a grid is exhausted
            break
        name = f"trial_{len(trials):03d}"
        print(f"[sweep] {name}: {', '.join(f'{k}={hydra_value(v)}' for k, v in params.items())}", flush=True)
        state, results = run_trial(params, overrides, out / name, group=out.name)
        value = results.get(metric)
        history.append({"name": name, "config": {k: {"value": v} for k, v in params.items()},
                        "summary_metrics": {metric: value} if value is not None else {}, "state": state})
        trials.append({"trial": name, "state": state, "params": {k: _plain(v) for k, v in params.items()},
                       metric: value, "run_dir": str(out / name)})
        print(f"[sweep] {name}: {state}" + (f", {metric}={value:.4f}" if value is not None else ""), flush=True)
    return trials


def wandb_sweep(config: dict, count: int | None, overrides: list[str], project: str) -> None:
    """Create the sweep on W&B and run an agent whose command is train.py."""
    import wandb

    config = {**config, "program": "train.py",
              "command": ["${env}", "${interpreter}", "${program}", *overrides, "${args_no_hyphens}"]}
    sweep_id = wandb.sweep(config, project=project)
    command = ["wandb", "agent", f"{wandb.Api().default_entity}/{project}/{sweep_id}"]
    if count:
        command += ["--count", str(count)]
    subprocess.call(command, cwd=REPO, env={**os.environ, "SER_GROUP": f"sweep-{sweep_id}"})


def ranked_table(trials: list[dict], metric: str, goal: str) -> Table:
    sign = -1 if goal == "maximize" else 1
    done = sorted((t for t in trials if t.get(metric) is not None), key=lambda t: sign * t[metric])
    failed = [t for t in trials if t.get(metric) is None]
    table = Table(title=f"sweep: {len(done)} finished, {len(failed)} failed; ranked by {metric} ({goal})")
    for column in ("rank", "trial", metric, "state", "parameters"):
        table.add_column(column)
    for rank, t in enumerate(done + failed, start=1):
        value = "" if t.get(metric) is None else f"{t[metric]:.4f}"
        params = " ".join(f"{k}={hydra_value(v)}" for k, v in t["params"].items())
        table.add_row(str(rank) if value else "-", t["trial"], value, t["state"], params)
    return table


def _plain(value):
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        value = float(value)
        return None if math.isnan(value) else value
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a W&B sweep file (see sweeps/)")
    parser.add_argument("--count", type=int, default=None, help="trials to run (default: a whole grid, else 10)")
    parser.add_argument("--project", default="ser")
    parser.add_argument("--local", action="store_true", help="run here even with W&B credentials")
    parser.add_argument("--out", default=None, help="sweep folder (default logs/sweeps/<name>_<time>)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every trial")
    args = parser.parse_args(argv)

    config = yaml.safe_load(Path(args.config).read_text())
    count = args.count if args.count is not None else default_count(config)
    sys.path.insert(0, str(REPO))
    from ser.errors import UserError
    from ser.experiment.tracking import has_wandb_credentials

    if has_wandb_credentials() and not args.local:
        wandb_sweep(config, count, args.overrides, args.project)
        return 0
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(args.out or REPO / "logs" / "sweeps" / f"{Path(args.config).stem}_{stamp}")
    out.mkdir(parents=True, exist_ok=True)
    try:
        trials = local_sweep(config, count, args.overrides, out)
    except UserError as err:
        print(f"\nerror: {err}\n", file=sys.stderr)
        return 2
    metric, goal = config["metric"]["name"], config["metric"].get("goal", "maximize")
    (out / "sweep_results.json").write_text(json.dumps(trials, indent=2))
    Console().print(ranked_table(trials, metric, goal))
    print(f"Sweep folder: {out} (offline W&B runs: wandb sync {out}/*/wandb/offline-run-*)")
    return 0 if any(t["state"] == "finished" for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())
