"""The cluster route on a real SLURM scheduler: Hydra's SLURM launcher (``hydra/launcher=slurm``)
submitting train.py jobs as the README says, a job requeued by the scheduler mid-training, and
DDP over two SLURM tasks on CPU.

The cluster is one node on this machine, from Debian's packages: ``.ci/slurm-up`` starts it
(munged, slurmctld, slurmd; accounting off), and CI runs it before the tests
(``SER_SLURM_REQUIRED=1``: there a missing cluster fails instead of skipping).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, SMALL

# One CPU and 2 GB a task: the one-node cluster is this 2-core machine.
ON_THE_CLUSTER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.gpus_per_node=0",
                  "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10"]
RUN = [*SMALL, "logger=csv", "data.batch_size=8"]


def cluster_missing() -> str | None:
    """Why no SLURM cluster answers here (None: one does)."""
    if shutil.which("sinfo") is None:
        return "SLURM is not installed here (Debian: apt-get install slurm-wlm munge; then bash .ci/slurm-up)"
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if state.returncode != 0 or not {"idle", "mixed", "allocated"} & set(state.stdout.split()):
        return f"no SLURM node is up (sinfo: {(state.stdout + state.stderr).strip()[:200]}); start one: bash .ci/slurm-up"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster():
    missing = cluster_missing()
    if missing and os.environ.get("SER_SLURM_REQUIRED"):
        pytest.fail(f"SER_SLURM_REQUIRED is set but {missing}")
    if missing:
        pytest.skip(missing)


def multirun(args: list[str], sweep: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                      os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "train.py", "-m", *ON_THE_CLUSTER, *args, f"hydra.sweep.dir={sweep}"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(proc: subprocess.Popen, timeout: int = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def job_logs(sweep: Path) -> str:
    """What the jobs printed: submitit's per-task logs and the runs' own log files."""
    return "".join(p.read_text(errors="replace") for p in sorted(sweep.rglob("*")) if p.suffix in (".out", ".err", ".log"))


def test_a_multirun_through_hydras_slurm_launcher_ends_with_every_jobs_results(cache_dir, tmp_path):
    sweep = tmp_path / "sweep"
    finished(multirun([*RUN, "debug=limit", "seed=1,2"], sweep))
    for job in ("0", "1"):
        results = json.loads((sweep / job / "results.json").read_text())
        assert results["seed"] == int(job) + 1 and results["n_test"] > 0
    ran = job_logs(sweep)
    assert ran.count("Starting with JobEnvironment(job_id=") == 2  # each a SLURM job of its own


def test_a_job_requeued_by_the_scheduler_continues_in_its_folder_with_each_epoch_once(cache_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = multirun([*RUN, "trainer.max_epochs=3", "trainer.limit_train_batches=4",
                     "+callbacks.requeue._target_=interrupt.RequeueAt", "+callbacks.requeue.epoch=1",
                     "+callbacks.requeue.batch=2"], sweep)
    job = let_a_requeued_job_start_at_once(proc)
    finished(proc)
    run = sweep / "0"
    ran = job_logs(sweep)
    assert "CANCELLED AT" in ran and "DUE TO JOB REQUEUE" in ran  # the scheduler's doing
    assert ran.count(f"Starting with JobEnvironment(job_id={job}") == 2
    assert "Continuing the run in" in ran and "from interrupted.ckpt" in ran
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert state["epoch"] == 2 and state["global_step"] == 3 * 4  # every step once
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["epoch"]) for r in rows if r.get("val/uar")) == [0, 1, 2]
    assert sorted(int(r["epoch"]) for r in rows if r.get("train/uar")) == [0, 1, 2]
    assert json.loads((run / "results.json").read_text())["test/uar"] >= 0


def let_a_requeued_job_start_at_once(proc: subprocess.Popen, timeout_s: float = 240) -> str:
    """SLURM holds a requeued job back 120 s before it may start again (its EligibleTime); let it
    start at once, as an administrator would (``scontrol update StartTime=now``). Returns the job id."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        queue = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], capture_output=True, text=True).stdout.split()
        for job, state, reason in zip(queue[::3], queue[1::3], queue[2::3]):
            if state == "PENDING" and reason == "BeginTime":
                subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
                return job
        time.sleep(0.5)
    raise AssertionError(f"no job was requeued within {timeout_s} s:\n{proc.stdout.read()[-3000:] if proc.stdout else ''}")


def test_ddp_over_two_slurm_tasks_on_cpu_counts_every_test_clip_once(cache_dir, tmp_path):
    sweep = tmp_path / "sweep"
    finished(multirun([*RUN, "debug=limit", "trainer=ddp_sim", "hydra.launcher.tasks_per_node=2",
                       "trainer.limit_test_batches=1.0"], sweep))
    ran = job_logs(sweep)
    assert "global_rank=0(2)" in ran and "global_rank=1(2)" in ran  # two SLURM tasks of one job
    assert "MEMBER: 1/2" in ran and "MEMBER: 2/2" in ran  # one DDP process group over them
    assert "sync_dist=True" not in ran  # no warning the user cannot act on
    results = json.loads((sweep / "0" / "results.json").read_text())
    assert sum(map(sum, results["confusion_matrix"])) == results["n_test"] > 0
