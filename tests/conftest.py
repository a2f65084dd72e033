"""Shared fixtures. Tests run on CPU, offline, with W&B disabled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# pytest-xdist runs a worker per core (pyproject's addopts): each worker, and every train.py it
# starts, then computes on its share of the cores. Set before numpy or torch is imported, which
# read it once; without it each worker's thread pools would claim every core and spin against
# the other workers' (oversubscribed, a run is slower than one worker alone).
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hypothesis import settings
from omegaconf import open_dict

import ser  # noqa: F401 - registers ${ser.unique:}, which the run folder names use

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
os.environ.setdefault("WANDB_MODE", "disabled")
# Nothing downloads in tests: encoders come from folders or a local Hugging Face cache, and a
# missing one fails at once instead of after the hub client's retries.
os.environ["HF_HUB_OFFLINE"] = "1"
# The local sweep engine's own environment (ser/experiment/sweep_engine.py), where a user's would be:
# resolved here, before tests point HOME at empty folders.
os.environ.setdefault("SER_SWEEPS_ENV", str(Path.home() / ".cache" / "ser" / "sweeps-engine"))
# FunASR's environment, the reference emotion2vec is checked against (tests/funasr_reference.py).
os.environ.setdefault("SER_FUNASR_ENV", str(Path.home() / ".cache" / "ser" / "funasr-reference"))
# The real Whisper tiny.en, fetched and converted once per machine (tests/real_whisper.py).
os.environ.setdefault("SER_WHISPER_TINY_EN", str(Path.home() / ".cache" / "ser" / "whisper-tiny.en"))

# CI draws the same examples on every run (seeded by each test's own definition), so a red CI is
# reproducible and never a lucky draw; elsewhere each run draws new ones and explores further.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# A small synthetic corpus for the tests: 8 speakers x 6 emotions x 6 sentences = 288 clips.
SMALL = ["data.corpus.num_speakers=8", "data.corpus.num_sentences=6", "data.num_workers=0",
         "data.test_fraction=0.25", "data.val_fraction=0.125"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache (synthetic corpus + decoded audio) for the whole session."""
    path = tmp_path_factory.mktemp("ser-cache")
    os.environ["SER_CACHE_DIR"] = str(path)
    return path


@pytest.fixture
def hub_cache_with_every_preset(tiny_encoders, tmp_path, monkeypatch) -> Path:
    """A Hugging Face cache holding, under each hub id the configs name, a tiny encoder of its family."""
    import re

    from huggingface_hub import constants
    from tiny_encoders import family_of, put_in_hub_cache

    cache = tmp_path / "hub"
    for path in [*(CONF / "model").glob("*.yaml"), CONF / "features" / "encoder.yaml"]:
        for hub_id in re.findall(r"^\s*name: (\S+/\S+)", path.read_text(), re.M):
            put_in_hub_cache(cache, hub_id, tiny_encoders[family_of(hub_id)])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory) -> dict[str, Path]:
    """family -> a folder holding a tiny random encoder of it, saved as real checkpoints are:
    every transformers family, and ``emotion2vec`` (written by FunASR itself, in its own
    environment, the first time a test asks for it)."""
    from tiny_encoders import FAMILIES, TinyEncoders, write_tiny_encoder

    root = tmp_path_factory.mktemp("encoders")
    return TinyEncoders({family: write_tiny_encoder(family, root / family) for family in FAMILIES})


@pytest.fixture
def offline_wandb(cache_dir, monkeypatch, tmp_path):
    """W&B as a new user without an account has it: the default logger goes offline."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    # A W&B service a test started in this process must not serve the train.py processes
    # tests start: each gets its own, as a user's runs do.
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no credentials anywhere


def compose_train(overrides: list[str], output_dir: Path | None = None):
    """The composed train config, as ``train.py`` would see it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def job_config(overrides: list[str], output_dir: Path | None = None):
    """The config as train.py's main receives it: composed, without the ``hydra`` node (which
    Hydra keeps in HydraConfig)."""
    cfg = compose_train(overrides, output_dir)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def train_here(overrides: list[str], run_dir: Path) -> dict | str:
    """train.py's work in this process (no interpreter start, no imports again: a second or two
    for a small run): its results.json, or the one paragraph a user mistake stopped it with.
    Anything else raises, traceback and all."""
    from ser.errors import find_user_error
    from ser.experiment.preflight import check_config
    from ser.experiment.train import run

    cfg = job_config(overrides, run_dir)
    try:
        check_config(cfg)
        run(cfg)
    except Exception as err:
        stopped = find_user_error(err)
        if stopped is None:
            raise
        return str(stopped)
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture
def compose_cfg(cache_dir):
    return compose_train


def run_train(args: list[str], run_dir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python train.py`` as a user would; fails the test with its output on error."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "train.py", *args, f"hydra.run.dir={run_dir}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"train.py {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def predict_cli(*args) -> subprocess.CompletedProcess:
    """Run ``ser-predict`` as a user would."""
    return subprocess.run([sys.executable, "-m", "ser.serving.predict", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def train_cli(cache_dir):
    return run_train


def tone(seconds: float, rate: int, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def choice(name, tiny_encoders) -> list[str]:
    """The overrides that select ``name`` (``hf-<family>``: model=hf on that tiny encoder)."""
    if name.startswith("hf-"):
        return ["model=hf", f"features.name={tiny_encoders[name[3:]]}"]
    return [f"model={name}"]


@pytest.fixture
def build(compose_cfg, tiny_encoders):
    """``build(name, extra)`` -> (the LightningModule of a model choice, number of classes)."""
    def built(name, extra=()):
        import torch
        from hydra.utils import instantiate

        torch.manual_seed(0)
        cfg = compose_cfg([*choice(name, tiny_encoders), *extra])
        return instantiate(cfg.model), len(cfg.data.emotions)
    return built


def train_a_few_steps(module, optimiser, waves, lengths, targets, steps: int = 3) -> None:
    """Plain training steps of cross-entropy on one batch (what tests of what learns need)."""
    import torch

    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(module(waves, lengths), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
