"""W&B's open-source sweep engine, run in a small environment of its own.

The ``sweeps`` package (the engine behind W&B's grid, random and Bayesian sweeps) pins
``numpy<2``, while torch, matplotlib and soxr are built for numpy 2. Installed beside ``ser`` it
would hold the whole environment back, so ``sweep.py`` keeps it apart: on the first local sweep
a virtual environment holding only ``sweeps`` is made at ``$SER_SWEEPS_ENV`` (default
``~/.cache/ser/sweeps-engine``), and each proposal is one call of its Python, JSON in and out.
The trials themselves run in ``ser``'s own environment, as ``train.py`` processes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from ser.errors import UserError

REQUIREMENT = "sweeps==0.3.*"  # the release whose next_run/SweepRun API this file speaks

# Runs inside the engine's environment: no ser import there.
PROPOSE = r"""
import json, sys
import sweeps
request = json.load(sys.stdin)
history = [sweeps.SweepRun(name=r["name"], config=r["config"], summary_metrics=r["summary_metrics"],
                           state=getattr(sweeps.RunState, r["state"])) for r in request["history"]]
proposal = sweeps.next_run(request["config"], history, validate=True)
json.dump(None if proposal is None else {k: v["value"] for k, v in proposal.config.items()},
          sys.stdout, default=float)
"""


def engine_dir() -> Path:
    return Path(os.environ.get("SER_SWEEPS_ENV", Path.home() / ".cache" / "ser" / "sweeps-engine"))


def engine_python() -> Path:
    """The engine environment's Python, made (once, under a lock) if it does not exist yet."""
    home = engine_dir()
    python = home / "bin" / "python"
    if python.is_file():
        return python
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / f".{home.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sweeps starting at once build it once
        if not python.is_file():
            _build(home)
    return python


def _build(home: Path) -> None:
    staging = home.with_name(home.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    print(f"[sweep] making the local sweep engine's environment ({REQUIREMENT}) at {home}", flush=True)
    venv.create(staging, with_pip=True)
    pip = subprocess.run([str(staging / "bin" / "python"), "-m", "pip", "install", "-q", REQUIREMENT],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise UserError(
            f"the local sweep engine (W&B's `sweeps` package) could not be installed into {home}: "
            f"pip said: {pip.stderr.strip().splitlines()[-1] if pip.stderr.strip() else pip.returncode}. "
            f"It lives in an environment of its own because it pins numpy<2. Make it by hand "
            f"(`python -m venv {home} && {home}/bin/pip install '{REQUIREMENT}'`), point "
            "SER_SWEEPS_ENV at an environment that has it, or run the sweep on W&B (`wandb login`).")
    staging.rename(home)  # appears whole or not at all


def next_params(config: dict, history: list[dict]) -> dict | None:
    """The engine's next point of the search, ``{hydra key: value}``; None once a grid is done.

    ``history`` rows are ``{"name", "config": {key: {"value": v}}, "summary_metrics", "state"}``
    with ``state`` ``"finished"`` or ``"failed"``.
    """
    request = json.dumps({"config": config, "history": history})
    proc = subprocess.run([str(engine_python()), "-c", PROPOSE], input=request,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
        raise UserError(f"the sweep engine refused the sweep configuration:\n{tail}")
    return json.loads(proc.stdout)


if __name__ == "__main__":  # `python -m ser.sweep_engine`: make the environment ahead of time
    print(engine_python())
    sys.exit(0)
