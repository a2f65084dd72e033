"""The default recipe's first run, as a new user meets it: ``python train.py`` with an empty
cache (the built-in corpus generated, decoded, its openSMILE functionals computed, then 15
epochs and the test), pinned to one core against free to use all of them.

    python benchmarks/first_run.py [train.py overrides]

One core is ``taskset -c 0`` (Linux): the process and every thread and process it starts see
one CPU, as on a one-core allocation; ``os.cpu_count()`` still reports the machine, so the
pools are sized the same and only the cores differ.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine


def first_run(prefix: list[str], overrides: list[str], work: Path) -> float:
    """Wall seconds of train.py on an empty cache."""
    env = {**os.environ, "SER_CACHE_DIR": str(work / "cache")}
    command = [*prefix, sys.executable, "train.py", "logger=csv", *overrides, f"hydra.run.dir={work / 'run'}"]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return time.perf_counter() - started


def main():
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is needed to pin a run to one core")
    overrides = sys.argv[1:]
    print(machine())
    print(f"python train.py logger=csv {' '.join(overrides)} on an empty cache")
    seconds = {}
    for name, prefix in (("one core", ["taskset", "-c", "0"]), (f"all {os.cpu_count()} cores", [])):
        with tempfile.TemporaryDirectory() as work:
            seconds[name] = first_run(prefix, overrides, Path(work))
    one = seconds["one core"]
    print("| cores | first run, s | speedup |")
    print("|---|---:|---:|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.0f} | {one / value:.2f}x |")


if __name__ == "__main__":
    main()
