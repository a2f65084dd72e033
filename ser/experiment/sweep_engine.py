"""W&B's open-source sweep engine, run in a small environment of its own.

The ``sweeps`` package (the engine behind W&B's grid, random and Bayesian sweeps) pins
``numpy<2``, while torch, matplotlib and soxr are built for numpy 2. Installed beside ``ser`` it
would hold the whole environment back, so ``sweep.py`` keeps it apart: on the first local sweep
a virtual environment holding only ``sweeps`` is made at ``$SER_SWEEPS_ENV`` (default
``~/.cache/ser/sweeps-engine``), and each proposal is one call of its Python, JSON in and out.
The trials themselves run in ``ser``'s own environment, as ``train.py`` processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ser.errors import UserError
from ser.experiment.side_env import SideEnvironmentError, side_python

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
    """The engine environment's Python, made (once) if it does not exist yet."""
    home = engine_dir()
    if not (home / "bin" / "python").is_file():
        print(f"[sweep] making the local sweep engine's environment ({REQUIREMENT}) at {home}", flush=True)
    try:
        return side_python(home, [[REQUIREMENT]])
    except SideEnvironmentError as err:
        raise UserError(
            f"the local sweep engine (W&B's `sweeps` package) could not be installed into {home}: "
            f"pip said: {err}. "
            f"It lives in an environment of its own because it pins numpy<2. Make it by hand "
            f"(`python -m venv {home} && {home}/bin/pip install '{REQUIREMENT}'`), point "
            "SER_SWEEPS_ENV at an environment that has it, or run the sweep on W&B (`wandb login`).") from None


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


if __name__ == "__main__":  # `python -m ser.experiment.sweep_engine`: make the environment ahead of time
    print(engine_python())
    sys.exit(0)
