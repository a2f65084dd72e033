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
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_help_lists_only_choices_and_every_listed_option_composes(compose_cfg, tmp_path):
    """Shared bases (conf/base_*.yaml) are not choices, and W&B sweep specs (sweeps/) are no
    Hydra group: --help lists neither, and every option it lists composes."""
    proc = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    groups = proc.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = dict(line.split(": ", 1) for line in groups.strip().splitlines()[1:] if ": " in line)
    assert "sweep" not in listed and {"data", "model", "experiment", "debug"} <= set(listed)
    for group, names in listed.items():
        names = names.split(", ")
        assert not any(n.startswith(("base", "default_")) for n in names), (group, names)
        assert group in ("trainer", "callbacks", "augment", "paths") or "default" not in names, (group, names)
        for name in names:
            overrides = [f"{group}={name}"] + ([f"data.root={tmp_path}"] if group == "data" else [])
            compose_cfg(overrides)
    assert not (CONF / "sweep").exists()


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

    module = instantiate(compose_cfg(["model=cnn_gru", "trainer.max_epochs=4"]).model)  # lr 1e-3
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
    from ser.errors import UserError, find_user_error

    with pytest.raises(Exception) as err:  # at construction, before any data work (Hydra wraps it)
        instantiate(compose_cfg(["trainer.max_epochs=-1"]).model)
    assert isinstance(find_user_error(err.value), UserError) and "T_max is -1" in str(find_user_error(err.value))


def test_notebook_experiments_keep_the_notebooks_recipe_not_the_default(compose_cfg, tmp_path):
    default = compose_cfg([])
    assert default.model.scheduler is not None and default.features.normalize == "speaker"
    for name in [n for n in options("experiment") if n.startswith("notebook")]:
        cfg = compose_cfg([f"experiment={name}", f"data.root={tmp_path}"])
        assert cfg.model.scheduler is None, name  # the notebooks' constant learning rate
        assert cfg.features.normalize == "utterance", name  # each spectrogram scaled alone


def test_compiling_on_the_cpu_is_refused_before_training_not_a_crash_mid_epoch(compose_cfg):
    from ser.errors import UserError

    module = instantiate(compose_cfg(["model.compile=true"]).model)
    with pytest.raises(UserError, match="not supported on the CPU"):
        module.on_fit_start()
    instantiate(compose_cfg([]).model).on_fit_start()  # off by default: nothing to refuse


# Each: (overrides, what the paragraph must name). All on the default synthetic corpus with
# an empty cache: the mistake must end the run before anything is generated or cached.
CONFIG_MISTAKES = [
    (["data.split=foo"], "data.split='foo'"),
    (["data.split=kfold", "data.fold=9"], "data.fold=9"),
    (["data.val_fraction=1.5"], "data.val_fraction=1.5"),
    (["data.eval_crop=middle"], "data.eval_crop='middle'"),
    (["data.emotions=[anger,joy]"], "joy"),
    (["data.num_workers=-1"], "data.num_workers=-1"),
    (["data.batch_size=0"], "data.batch_size=0"),
    (["data.batch_size=1"], "batch of one"),  # cannot train a batch normalisation
    (["trainer.use_distributed_sampler=true"], "trainer.use_distributed_sampler=true"),
    (["data.max_seconds=-2"], "data.max_seconds=-2"),
    (["data.cache_on_device=gpu"], "data.cache_on_device='gpu'"),
    (["model=cnn_gru", "features.kind=spectrogram"], "features.kind='spectrogram'"),
    (["features.normalize=global"], "features.normalize='global'"),
    (["model.optimizer.lr=-1"], "learning rate"),
    (["++model.net.hiden_size=64"], "hiden_size"),
    (["model.compile=true"], "model.compile=true"),
    (["trainer.precision=17"], "17"),
    (["trainer.accelerator=gpu"], "gpu"),
    (["data=multi"], "RAVDESS"),  # a corpus part that is not there
    (["data.corpus.num_speakers=2"], "num_speakers=2"),
    (["data.split=file", "data.split_file=/nowhere/split.csv"], "/nowhere/split.csv"),
    (["model=hf", "features.freeze=some"], "features.freeze='some'"),
    (["model=hf", "features.name=/nowhere/encoder"], "/nowhere/encoder"),
    (["model=hf", "features.adapter=lora", "features.freeze=conv"], "features.adapter=lora"),
    (["test_on=[cremad,nosuch]"], "test_on='nosuch'"),
    (["test_on=[emodb]"], "EmoDB"),  # a test corpus that is not there
    (["test_ckpt=latest"], "test_ckpt='latest'"),
    (["augment=channel", "augment.channel.noise.snr_db=[20,5]"], "augment.channel.noise.snr_db"),
]


def test_every_config_mistake_is_one_paragraph_before_any_work(tmp_path):
    import os
    import time

    def start(i, overrides):
        cache = tmp_path / f"cache{i}"
        cache.mkdir()
        env = {**os.environ, "SER_CACHE_DIR": str(cache), "WANDB_MODE": "disabled"}
        return cache, time.perf_counter(), subprocess.Popen(
            [sys.executable, "train.py", *overrides, "logger=csv", f"hydra.run.dir={tmp_path / f'run{i}'}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    seconds = []
    for first in range(0, len(CONFIG_MISTAKES), 2):  # two at a time, on two cores
        batch = [(i, *CONFIG_MISTAKES[i]) for i in range(first, min(first + 2, len(CONFIG_MISTAKES)))]
        running = [(overrides, named, *start(i, overrides)) for i, overrides, named in batch]
        for overrides, named, cache, began, proc in running:
            _, stderr = proc.communicate(timeout=120)
            seconds.append(time.perf_counter() - began)
            assert proc.returncode == 2, (overrides, stderr[-3000:])
            assert "Traceback" not in stderr, (overrides, stderr[-3000:])
            paragraph = stderr[stderr.index("error: "):].strip()
            assert "\n\n" not in paragraph and named in paragraph, (overrides, paragraph)
            assert not any(cache.iterdir()), (overrides, list(cache.rglob("*")))  # nothing generated or cached
    print(f"config mistakes: exit 2 after {min(seconds):.1f}-{max(seconds):.1f} s (two at a time)")


def test_the_precisions_checked_up_front_are_the_ones_lightning_accepts():
    import typing

    from lightning.fabric.connector import _PRECISION_INPUT

    from ser.experiment.preflight import PRECISIONS

    accepted = [value for literal in typing.get_args(_PRECISION_INPUT) for value in typing.get_args(literal)]
    assert sorted(map(str, PRECISIONS)) == sorted(map(str, accepted))
    assert len(PRECISIONS) == len(accepted)


@pytest.mark.parametrize("group", ["model", "features", "data", "experiment", "trainer"])
def test_the_early_check_passes_every_shipped_option(compose_cfg, group, tmp_path, hub_cache_with_every_preset):
    from ser.experiment.preflight import check_config

    # The folders IEMOCAP's and MSP-Podcast's checks look for before any work.
    (tmp_path / "Session1").mkdir()
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n")

    for choice in options(group):
        overrides = [f"{group}={choice}", f"data.root={tmp_path}"]
        if group == "data" and choice.startswith("synthetic"):
            overrides.pop()
        if group == "data" and choice == "multi":  # its parts are looked for under paths.data_dir
            (tmp_path / "CREMA-D").mkdir(exist_ok=True)
            (tmp_path / "RAVDESS").mkdir(exist_ok=True)
            overrides.append(f"paths.data_dir={tmp_path}")
        if group == "trainer" and choice in ("gpu", "ddp") and not torch.cuda.is_available():
            continue  # refused here by design: test_every_config_mistake... covers it
        if group == "features" and choice == "encoder":
            overrides.append("model=hf")  # the head that reads an encoder's states
        check_config(compose_cfg(overrides))


def test_the_early_check_imports_no_lightning():
    code = ("import sys; from hydra import compose, initialize_config_dir; "
            "from ser.experiment.preflight import check_config; "
            f"initialize_config_dir(config_dir={str(CONF)!r}, version_base='1.3'); "
            "check_config(compose(config_name='train', return_hydra_config=True)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
