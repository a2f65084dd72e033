"""train.py end to end on the small synthetic corpus, as a user runs it."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import SMALL, job_config, run_train

FAST = [*SMALL, "logger=csv"]


def read_split(run_dir):
    with open(run_dir / "split.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("loading", [[], ["data.cache_on_device=true"]], ids=["loaders", "cache-on-device"])
def test_fast_dev_run_connects_everything(train_cli, tmp_path, loading):
    proc = train_cli([*FAST, "debug=fdr", *loading], tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert 0.0 <= results["test/uar"] <= 1.0
    assert "test/uar" in proc.stdout


@pytest.mark.slow
def test_short_training_beats_chance_on_held_out_speakers_and_reports(train_cli, tmp_path):
    train_cli([*FAST, "trainer.max_epochs=8"], tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    chance = 1 / results["num_classes"]
    assert results["test/uar"] >= 2 * chance, results
    for key in ("test/uar", "test/war", "test/macro_f1", "classes", "num_classes", "n_train",
                "n_val", "n_test", "tested_ckpt"):
        assert key in results
    assert results["protocol"] == "speaker-independent"
    assert results["classes"] == ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    assert os.path.samefile(results["tested_ckpt"], tmp_path / "checkpoints" / "last.ckpt")  # test_ckpt=last
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 10_000
    assert (tmp_path / "config.yaml").is_file()
    assert sum(sum(row) for row in results["confusion_matrix"]) == results["n_test"]

    rows = read_split(tmp_path)
    counts = {name: sum(r["split"] == name for r in rows) for name in ("train", "val", "test")}
    assert counts == {"train": results["n_train"], "val": results["n_val"], "test": results["n_test"]}
    speakers = {name: {r["speaker"] for r in rows if r["split"] == name} for name in counts}
    assert not speakers["train"] & speakers["test"] and not speakers["val"] & speakers["test"]
    assert not speakers["train"] & speakers["val"]


def test_split_csv_is_reproduced_byte_for_byte(train_cli, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    train_cli([*FAST, "debug=fdr", "seed=7"], a)
    train_cli([*FAST, "debug=fdr", "seed=7"], b)
    train_cli([*FAST, "debug=fdr", "seed=8"], c)
    assert (a / "split.csv").read_bytes() == (b / "split.csv").read_bytes()
    assert (a / "split.csv").read_bytes() != (c / "split.csv").read_bytes()


def test_resume_from_last_checkpoint_continues_with_the_next_epoch(train_cli, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    train_cli([*FAST, "trainer.max_epochs=2", "test=false"], first)
    last = first / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True, map_location="cpu")
    assert state["epoch"] == 1 and state["ser"]["classes"][0] == "anger"
    train_cli([*FAST, "trainer.max_epochs=3", f"ckpt_path={last}", "test_ckpt=best"], second)
    resumed = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert resumed["epoch"] == 2
    tested = json.loads((second / "results.json").read_text())["tested_ckpt"]
    assert os.path.samefile(tested, second / "checkpoints" / "best.ckpt")  # test_ckpt=best
    assert resumed["global_step"] == state["global_step"] * 3 // 2
    with open(second / "csv" / "metrics.csv") as handle:
        epochs = {row["epoch"] for row in csv.DictReader(handle) if row.get("val/uar")}
    assert epochs == {"2"}
    assert (first / "split.csv").read_bytes() == (second / "split.csv").read_bytes()


def test_default_wandb_logger_goes_offline_without_credentials(offline_wandb, train_cli, tmp_path):
    train_cli([*SMALL, "debug=fdr"], tmp_path / "run")
    offline = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))


def test_tensorboard_logger_writes_event_files(train_cli, tmp_path):
    train_cli([*SMALL, "debug=limit", "trainer.max_epochs=1", "logger=tensorboard"], tmp_path)
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))


def test_missing_corpus_root_is_one_clear_paragraph(cache_dir, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    proc = subprocess.run([sys.executable, "train.py", "data=cremad",
                           f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}",
                           "logger=csv"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(tmp_path / "nowhere") in proc.stderr and "CREMA-D" in proc.stderr


def test_training_loss_and_metrics_score_each_epochs_outputs_once(compose_cfg, monkeypatch):
    from hydra.utils import instantiate
    from torchmetrics.classification import MulticlassRecall

    module = instantiate(compose_cfg(["augment=none"]).model)
    logged = {}

    def log_dict(metrics, **_):  # what Lightning does with logged metric objects at epoch end
        logged.update(metrics.compute())
        metrics.reset()
    monkeypatch.setattr(module, "log_dict", log_dict)
    monkeypatch.setattr(module, "log", lambda name, value, **_: logged.__setitem__(name, value))
    torch.manual_seed(0)
    batches = [(torch.randn(n, 16000) * 0.1, torch.full((n,), 16000), torch.randint(0, 6, (n,))) for n in (4, 4, 2)]
    for epoch in (batches, batches[:1]):
        module.on_train_epoch_start()
        losses = [module.training_step(batch, 0).detach() for batch in epoch]
        assert not logged  # nothing per step
        preds, labels = (torch.cat(p) for p in zip(*[out[1:] for out in module._train_outputs]))
        assert len(labels) == sum(len(batch[2]) for batch in epoch)
        module.on_train_epoch_end()
        assert float(logged["train/uar"]) == pytest.approx(float(MulticlassRecall(6, average="macro")(preds, labels)))
        per_clip = sum(loss * len(batch[2]) for loss, batch in zip(losses, epoch)) / len(labels)
        assert float(logged["train/loss"]) == pytest.approx(float(per_clip))
        logged.clear()


def test_credentials_for_a_self_hosted_wandb_server_count(tmp_path, monkeypatch):
    from ser.experiment.tracking import has_wandb_credentials

    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_CONFIG_DIR", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".netrc").write_text("machine wandb.lab.example\n  login user\n  password secret\n")
    assert not has_wandb_credentials()  # W&B's cloud is the default server: no entry for it
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.lab.example")
    assert has_wandb_credentials()
    monkeypatch.delenv("WANDB_BASE_URL")
    settings = tmp_path / ".config" / "wandb" / "settings"  # what `wandb login --host` writes
    settings.parent.mkdir(parents=True)
    settings.write_text("[default]\nbase_url = https://wandb.lab.example\n")
    assert has_wandb_credentials()
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    assert not has_wandb_credentials()  # an entry for the cloud is not one for the lab's server


def test_runs_started_in_the_same_second_get_folders_of_their_own():
    import re
    import subprocess
    import sys

    from conftest import REPO

    procs = [subprocess.Popen([sys.executable, "train.py", "--cfg", "all", "--resolve"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    folders = [re.search(r"dir: (\S+/runs/\S+)", proc.communicate(timeout=120)[0]).group(1) for proc in procs]
    stamp = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"
    assert all(re.search(rf"/runs/{stamp}_\d+-[0-9a-f]{{4}}$", f) for f in folders), folders
    assert folders[0] != folders[1]


@pytest.mark.parametrize(("signal_name", "stage", "batch", "validations"), [
    ("SIGTERM", "train", 2, 1),  # mid-epoch
    ("SIGTERM", "train", 5, 1),  # the epoch's last batch: validation still to run
    ("SIGTERM", "val", 0, 1),    # mid-validation: Lightning would not run it again
    ("SIGKILL", "train", 2, 1),  # no warning: only last.ckpt is there
    ("SIGTERM", "train", 4, 2),  # validated twice an epoch, stopped between the two
])
def test_a_run_killed_mid_epoch_continues_when_started_again_in_its_folder(offline_wandb, tmp_path, signal_name,
                                                                          stage, batch, validations):
    """What a SLURM requeue does: the same command in the same folder after the process died."""
    import re
    import subprocess
    import sys

    from conftest import REPO
    from wandb_runs import offline_runs

    run = tmp_path / "run"
    signalled = ["+callbacks.signal._target_=interrupt.SignalAt", f"+callbacks.signal.stage={stage}",
                 "+callbacks.signal.epoch=1", f"+callbacks.signal.batch={batch}",
                 f"+callbacks.signal.signal_name={signal_name}"]
    args = [sys.executable, "train.py", *SMALL, "logger=wandb", "trainer.max_epochs=4",
            "trainer.limit_train_batches=6", "trainer.limit_val_batches=2", "data.batch_size=8",
            f"trainer.val_check_interval={1 / validations}", f"hydra.run.dir={run}", *signalled]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                      os.environ.get("PYTHONPATH")]))}
    first = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == (143 if signal_name == "SIGTERM" else -9), first.stderr[-3000:]  # a scheduler requeues
    again = subprocess.run(args, cwd=REPO, env={**env, "SER_TEST_SIGNALLED": "1"}, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Continuing the run in" in again.stderr + again.stdout
    last = run / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=True, map_location="cpu")
    assert state["epoch"] == 3 and state["global_step"] == 4 * 6  # every epoch once, no step lost
    # Two processes, one W&B run, every epoch's validation logged once.
    runs = [r for r in offline_runs(run / "wandb") if r.run_id]
    assert {r.run_id for r in runs} == {(run / "wandb_id").read_text().strip()}
    epochs = sorted(row["epoch"] for r in runs for row in r.history if "val/uar" in row)
    every = [epoch for epoch in range(4) for _ in range(validations)]
    if signal_name == "SIGTERM":  # the first process closed its run: both halves are there
        assert epochs == every
    else:  # a killed process cannot flush its offline records (online, W&B has them already)
        step = int(re.search(r"from last\.ckpt \(step (\d+)\)", again.stderr + again.stdout).group(1))
        assert epochs == list(range(step // 6, 4))
    assert json.loads((run / "results.json").read_text())["test/uar"] >= 0
    # The CSV history: every epoch's validation once, across both processes (what was logged up
    # to the checkpoint is on disk with it, even after a SIGKILL); no checkpoint unpickled.
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    validated = [(int(r["epoch"]), int(r["step"])) for r in rows if r.get("val/uar")]
    assert sorted(epoch for epoch, _ in validated) == every
    assert len({step for _, step in validated}) == len(validated)  # each validation once, at its own step
    trained = sorted(int(r["epoch"]) for r in rows if r.get("train/uar"))
    assert trained == [0, 1, 2, 3] if signal_name == "SIGTERM" else trained[-3:] == [1, 2, 3]
    assert "weights_only" not in first.stderr + again.stderr


def test_a_folder_holding_another_configs_run_is_refused(train_cli, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    train_cli([*FAST, "debug=limit"], tmp_path)
    proc = subprocess.run([sys.executable, "train.py", *FAST, "debug=limit", "model.optimizer.lr=0.003",
                           f"hydra.run.dir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "another config" in proc.stderr and "model.optimizer.lr" in proc.stderr


def test_a_shared_split_file_scores_another_run_on_exactly_its_clips(train_cli, tmp_path):
    train_cli([*FAST, "debug=fdr", "seed=1"], tmp_path / "first")
    train_cli([*FAST, "debug=fdr", "seed=2", "data.split=file", f"data.split_file={tmp_path / 'first' / 'split.csv'}"],
              tmp_path / "second")
    first, second = read_split(tmp_path / "first"), read_split(tmp_path / "second")
    assert first == second
    from ser.data.splits import assign_splits

    drawn = assign_splits([r["speaker"] for r in first], [r["emotion"] for r in first], "speaker", seed=2,
                          val_fraction=0.125, test_fraction=0.25)
    assert drawn != [r["split"] for r in first]  # seed 2 alone would have drawn other speakers
    results = json.loads((tmp_path / "second" / "results.json").read_text())
    assert results["split"] == "file" and results["n_test"] == sum(r["split"] == "test" for r in first)


def test_results_carry_per_speaker_uar_and_intervals_that_resample_speakers(train_cli, tmp_path):
    train_cli([*FAST, "debug=limit", "trainer.limit_test_batches=1.0", "test_bootstrap=500"], tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    test_speakers = {r["speaker"] for r in read_split(tmp_path) if r["split"] == "test"}
    assert set(results["per_speaker_uar"]) == test_speakers
    assert results["bootstrap"] == {"unit": "speaker", "resamples": 500, "speakers": len(test_speakers)}
    for name in ("uar", "war", "macro_f1"):
        low, high = results[f"test/{name}_ci95"]
        assert low <= results[f"test/{name}"] <= high


def test_the_test_clips_are_listed_in_the_order_the_loader_scores_them(compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg(["model=cnn_gru", *SMALL])  # clips of different lengths in frames (functionals are one)
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data, emotions=module.classes, frontend=module.frontend)
    dm.prepare_data()
    dm.setup("test")
    order = dm.eval_order("test")
    loaded = torch.cat([batch[2] for batch in dm.test_dataloader()]).tolist()
    assert loaded == [dm.datasets["test"].labels[i] for i in order]
    clips = dm.eval_clips("test")
    assert [c.path for c in clips] == [dm.datasets["test"].paths[i] for i in order]
    assert [dm.classes.index(c.emotion) for c in clips] == loaded  # so their speakers are too
    assert order.tolist() != list(range(len(order)))  # sorted by length, not the split's own order


def test_balanced_class_weights_and_sampling_follow_the_training_split(compose_cfg, train_cli, tmp_path):
    from collections import Counter

    from hydra.utils import instantiate

    cfg = compose_cfg([*SMALL, "data.emotions=[anger,sadness,neutral]", "data.balanced_sampling=true",
                       "model.class_weights=balanced"])
    module = instantiate(cfg.model)
    dm = instantiate(cfg.data, emotions=module.classes, frontend=module.frontend)
    dm.prepare_data()
    dm.setup("fit")
    keep = {0, 1}  # make the training split imbalanced: drop two thirds of class 2
    train = dm.datasets["train"]
    rare = [i for i, label in enumerate(train.labels) if label == 2]
    kept = [i for i in range(len(train)) if train.labels[i] in keep or i in rare[: len(rare) // 3]]
    train.paths, train.labels = [train.paths[i] for i in kept], [train.labels[i] for i in kept]
    counts = dm.class_counts("train")
    assert counts[2] < counts[0] / 2
    module.task.weigh_classes(counts)
    weights = module.task.class_weight
    assert weights[2] > weights[0] and torch.isclose((weights * torch.tensor(counts)).sum(), torch.tensor(float(sum(counts))))
    drawn = Counter(label for batch in [dm.train_dataloader()] * 20 for b in batch for label in b[2].tolist())
    assert max(drawn.values()) < 1.3 * min(drawn.values())  # equal draws, though class 2 has a third as many
    train_cli([*FAST, "debug=fdr", "model.class_weights=balanced", "data.balanced_sampling=true"], tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["test/uar"] >= 0


def test_a_run_prints_each_line_once_and_nothing_nobody_can_act_on(offline_wandb, tmp_path, monkeypatch):
    import re

    # Lightning warns on any machine where SLURM's srun exists (CI's runs a real cluster).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = run_train([*SMALL, "trainer.max_epochs=1"], tmp_path / "run")
    printed = (proc.stdout + proc.stderr).splitlines()
    messages = [re.sub(r"^\[[^]]*\]\[[^]]*\]\[\w+\] - ", "", line) for line in printed
                if line.startswith("[")]  # every log record, through Hydra's one handler
    assert len(messages) >= 5 and len(messages) == len(set(messages)), messages
    assert not [line for line in printed if line.startswith("INFO: ")]  # Lightning's own handler
    for noise in ("ckpt_path=None", 'ckpt_path="last"', "LeafSpec", "litlogger", "anonymous setting",
                  "srun", "TPU available", "was configured so 100%", "model summary callbacks"):
        assert not [line for line in printed if noise in line], noise
    assert sum("test/uar" in line for line in printed) == 1  # ser's table, not Lightning's too
    assert "DataLoader 0" not in proc.stdout
    assert "GPU available" in proc.stdout + proc.stderr  # information about the run stays


def test_a_run_folder_written_before_the_wings_continues_under_its_old_target_names(compose_cfg, tmp_path):
    """A config.yaml written before ser/'s modules moved into wings names ser.tracking.CSVLogger
    and ser.callbacks.InterruptedCheckpoint: the same run continues, another config still does not."""
    from omegaconf import OmegaConf

    from ser.errors import ConfigError
    from ser.experiment.train import resumable
    from ser.module import MOVED_MODULES

    cfg = job_config(["logger=wandb"])
    written = OmegaConf.to_yaml(cfg, resolve=True)
    for old, new in MOVED_MODULES.items():
        written = written.replace(f"_target_: {new}.", f"_target_: {old}.")
    assert "_target_: ser.tracking.CSVLogger" in written and "_target_: ser.callbacks." in written
    (tmp_path / "config.yaml").write_text(written)
    (tmp_path / "checkpoints").mkdir()
    torch.save({"global_step": 7}, tmp_path / "checkpoints" / "last.ckpt")
    assert resumable(tmp_path, cfg) == str(tmp_path / "checkpoints" / "last.ckpt")
    cfg.trainer.max_epochs += 1
    with pytest.raises(ConfigError, match="trainer.max_epochs"):
        resumable(tmp_path, cfg)
