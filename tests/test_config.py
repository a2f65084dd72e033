"""Every config group composes, instantiates and reads like Hydra users expect."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from conftest import CONF, REPO


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("default"))


@pytest.mark.parametrize("group", ["data", "features", "augment", "model", "callbacks", "logger",
                                   "trainer", "debug", "experiment", "paths", "hydra"])
def test_every_option_of_every_group_composes(compose_cfg, group, tmp_path):
    choices = options(group) or ["default"]
    for choice in choices:
        overrides = [f"{group}={choice}"]
        if group == "data" and not choice.startswith("synthetic"):  # built-in corpora need no root
            overrides.append(f"data.root={tmp_path}")
        cfg = compose_cfg(overrides)
        assert cfg.data._target_ == "ser.data.SERDataModule"
        assert cfg.model._target_ == "ser.module.SERModule"


def test_synthetic_cremad_has_crema_d_s_size_and_clip_length(compose_cfg):
    corpus = instantiate(compose_cfg(["data=synthetic_cremad"]).data.corpus)
    utterances = corpus.utterances()
    assert len(utterances) == 7442 and len({speaker for speaker, *_ in utterances}) == 91
    from ser.data.synthetic import PROSODY, make_voice, synthesize

    seconds = [len(synthesize(make_voice(i, 0), emotion, np.random.default_rng(i), 16000,
                              syllables=corpus.spec.syllables)) / 16000
               for i in range(4) for emotion in PROSODY]
    assert 2.2 < np.mean(seconds) < 2.8  # CREMA-D's clips average about 2.5 s


def test_model_config_instantiates_a_callable_module(compose_cfg):
    cfg = compose_cfg([])
    module = instantiate(cfg.model)
    waves, lengths = torch.randn(3, 24000), torch.tensor([24000, 16000, 9000])
    logits = module(waves, lengths)
    assert logits.shape == (3, len(cfg.data.emotions))
    assert torch.isfinite(logits).all()


def test_lstm_model_switches_the_front_end_to_mfcc_unless_told_otherwise(compose_cfg):
    assert compose_cfg(["model=lstm"]).features.kind == "mfcc"
    assert compose_cfg(["model=lstm", "features=logmel"]).features.kind == "logmel"
    module = instantiate(compose_cfg(["model=lstm"]).model)
    assert module.frontend.num_features == 40


def test_restricting_emotions_resizes_the_classifier(compose_cfg):
    cfg = compose_cfg(["data.emotions=[anger,happiness,sadness]"])
    module = instantiate(cfg.model)
    assert module(torch.randn(2, 20000), torch.tensor([20000, 12000])).shape == (2, 3)


@pytest.mark.parametrize("args, expect", [(["--help"], "== Configuration groups =="),
                                          (["--cfg", "job"], "_target_: ser.module.SERModule")])
def test_hydra_cli_flags(args, expect):
    out = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert expect in out.stdout


def test_learning_rate_follows_a_cosine_to_zero_over_the_run(compose_cfg):
    import math

    module = instantiate(compose_cfg(["trainer.max_epochs=4"]).model)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(4):  # one scheduler step per epoch, as Lightning steps it
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1e-3 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_a_schedule_without_a_length_is_a_clear_error(compose_cfg):
    from ser.errors import UserError

    module = instantiate(compose_cfg(["trainer.max_epochs=-1"]).model)
    with pytest.raises(UserError, match="T_max is -1"):
        module.configure_optimizers()


def test_seed_experiments_keep_the_notebooks_constant_learning_rate(compose_cfg, tmp_path):
    assert compose_cfg([]).model.scheduler is not None  # the default decays
    for name in options("experiment"):
        cfg = compose_cfg([f"experiment={name}", f"data.root={tmp_path}"])
        assert cfg.model.scheduler is None, name


def test_compiling_on_the_cpu_is_refused_before_training_not_a_crash_mid_epoch(compose_cfg):
    from ser.errors import UserError

    module = instantiate(compose_cfg(["model.compile=true"]).model)
    with pytest.raises(UserError, match="not supported on the CPU"):
        module.on_fit_start()
    instantiate(compose_cfg([]).model).on_fit_start()  # off by default: nothing to refuse
