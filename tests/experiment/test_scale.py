"""Using a trained model, evaluating it across corpora, and scaling the same run out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from ser.module import NotASerCheckpoint, SERModule

from conftest import REPO, SMALL, predict_cli
from corpora_fixtures import assert_answered_and_skipped, damaged_folder, emodb, speech

QUICK = [*SMALL, "logger=csv", "debug=limit"]


@pytest.fixture(scope="module")
def trained(cache_dir, tmp_path_factory):
    """A small CNN-GRU trained for two short epochs on the synthetic corpus."""
    from conftest import run_train

    run = tmp_path_factory.mktemp("trained")
    run_train(QUICK, run)
    return run


def test_predict_prints_one_json_per_file_for_any_rate_and_channels(trained, tmp_path):
    sf.write(tmp_path / "stereo48k.wav", np.stack([speech(1, "anger", 0, 48000)] * 2, axis=1), 48000)
    sf.write(tmp_path / "mono8k.wav", speech(2, "sadness", 1, 8000), 8000)
    (tmp_path / "more").mkdir()
    sf.write(tmp_path / "more" / "clip.wav", speech(3, "fear", 2, 16000), 16000)
    (tmp_path / "more" / "broken.wav").write_bytes(b"not audio")
    proc = predict_cli("--ckpt", trained / "checkpoints" / "best.ckpt", tmp_path / "stereo48k.wav",
                       tmp_path / "mono8k.wav", tmp_path / "more")
    assert proc.returncode == 3, proc.stderr  # every readable file answered, one skipped
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["stereo48k.wav", "mono8k.wav", "clip.wav"]
    for row in rows:
        assert abs(sum(row["probs"].values()) - 1) < 1e-4
        assert row["emotion"] == max(row["probs"], key=row["probs"].get)
    assert "broken.wav" in proc.stderr


def test_predict_answers_every_readable_file_of_a_damaged_folder_and_exits_3(trained, tmp_path):
    answered, skipped = damaged_folder(tmp_path / "mixed")
    proc = predict_cli("--ckpt", trained / "checkpoints" / "best.ckpt", tmp_path / "mixed")
    assert_answered_and_skipped(proc, answered, skipped)
    whole = predict_cli("--ckpt", trained / "checkpoints" / "best.ckpt", *(tmp_path / "mixed" / n for n in answered))
    assert whole.returncode == 0 and len(whole.stdout.splitlines()) == len(answered)


def test_predict_streams_in_chunks_keeps_order_and_scores_each_clip_as_alone(compose_cfg, tmp_path):
    import torch
    from hydra.utils import instantiate

    from ser.data.audio import load_mono
    from ser.serving.predict import predict
    from ser.serving.runtime import CheckpointModel

    torch.manual_seed(0)
    # Per utterance: each clip is its own (per speaker, the files of a call are one speaker's:
    # tests/test_normalization.py).
    module = instantiate(compose_cfg(["model=cnn_gru", "features.normalize=utterance"]).model).eval()
    files = []
    for i, seconds in enumerate([2.0, 0.5, 1.5, 0.8, 2.4, 1.0, 0.3]):  # 7 clips: 2 chunks of 2x2
        files.append(tmp_path / f"{i}.wav")
        sf.write(files[-1], np.random.default_rng(i).normal(0, 0.1, int(seconds * 16000)), 16000)
    rows = list(predict(CheckpointModel(module), files, batch_size=2, chunk_batches=2))
    assert [r["path"] for r in rows] == [str(f) for f in files]
    for path, row in zip(files, rows):
        wave = torch.from_numpy(load_mono(path, 16000))
        with torch.no_grad():
            alone = module(wave[None], torch.tensor([len(wave)])).softmax(-1)[0]
        assert np.allclose(list(row["probs"].values()), alone.numpy(), atol=1e-4)


def test_predict_refuses_files_that_are_not_ser_checkpoints(tmp_path):
    import torch

    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    for path in (tmp_path / "other.ckpt", tmp_path / "junk.ckpt"):
        proc = predict_cli("--ckpt", path, tmp_path)
        assert proc.returncode == 2 and "not a ser checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(NotASerCheckpoint):
        SERModule.from_checkpoint(tmp_path / "other.ckpt")


def test_evaluate_a_checkpoint_on_another_corpus(trained, tmp_path, train_cli):
    root = emodb(tmp_path / "emodb")  # 7 emotions incl. boredom, which the model never saw
    train_cli(["train=false", f"ckpt_path={trained / 'checkpoints' / 'best.ckpt'}", "data=emodb",
               f"data.root={root}", "logger=csv", "data.num_workers=0"], tmp_path / "eval")
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["classes"] == ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    assert results["trained"] is False and results["corpus"].startswith("EmoDB")
    assert sum(map(sum, results["confusion_matrix"])) == results["n_test"] > 0
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()


def test_ddp_with_two_cpu_processes_builds_the_log_mel_in_shares_and_counts_every_test_clip_once(
        train_cli, compose_cfg, tmp_path):
    from hydra.utils import instantiate

    run = [*QUICK, "model=cnn_gru"]
    proc = train_cli([*run, "trainer=ddp_sim", "trainer.limit_test_batches=1.0", "data.eval_batch_size=7",
                      f"data.cache_dir={tmp_path / 'cache'}"], tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert sum(map(sum, results["confusion_matrix"])) == results["n_test"]
    output = proc.stdout + proc.stderr
    assert "-part0of2" in output and "-part1of2" in output and "Assembled" in output
    # The very cache one process builds, byte for byte.
    cfg = compose_cfg([*run, f"data.cache_dir={tmp_path / 'one'}"])
    module = instantiate(cfg.model)
    instantiate(cfg.data, emotions=module.classes, frontend=module.frontend, task=module.task).prepare_data()
    one, two = (sorted((tmp_path / name / "features").glob("*.rows")) for name in ("one", "cache"))
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 1
    assert one[0].read_bytes() == two[0].read_bytes()


def test_bf16_mixed_precision_on_cpu(train_cli, tmp_path):
    # Batches of 8: a CPU without bf16 instructions emulates them, slowly.
    train_cli([*QUICK, "model=cnn_gru", "trainer=cpu", "trainer.precision=bf16-mixed", "data.batch_size=8",
               "data.eval_batch_size=8"], tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert np.isfinite(results["test/loss"])


@pytest.mark.parametrize("launcher", ["joblib", "slurm"])
def test_launcher_configs_compose(compose_cfg, launcher):
    from conftest import compose_train

    cfg = compose_train([f"hydra/launcher={launcher}"])
    assert "launcher" in cfg.hydra and cfg.hydra.launcher._target_.startswith("hydra_plugins")


def test_runs_are_tagged_and_sweep_members_share_a_wandb_group(compose_cfg, monkeypatch):
    from ser.experiment.train import label_runs

    cfg = compose_cfg(["model=lstm", "logger=wandb"])
    label_runs(cfg)
    assert {"lstm", "synthetic"} <= set(cfg.tags) and cfg.logger.wandb.group is None
    monkeypatch.setenv("SER_GROUP", "sweep-abc")
    cfg = compose_cfg(["model=cnn", "logger=wandb", "data=cremad", "data.root=/x"])
    label_runs(cfg)
    assert {"cnn", "cremad"} <= set(cfg.tags) and cfg.logger.wandb.group == "sweep-abc"


MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml") if not p.stem.startswith("default"))
CORPORA = sorted(p.stem for p in (REPO / "conf" / "data").glob("*.yaml") if p.stem != "default")


def test_every_model_and_corpus_choice_names_its_runs(compose_cfg):
    """Tags, the confusion-matrix title and results.json all read cfg.choices: the option the
    user typed, so wav2vec2, HuBERT and WavLM runs (one class) stay apart, as do resnet18 and cnn."""
    from ser.experiment.train import label_runs

    # 7 architectures, 2 eGeMAPS baselines, model=hf + 12 presets, 2 emotion2vec presets;
    # 10 corpora (IEMOCAP and MSP-Podcast the last)
    assert len(MODELS) == 24 and len(CORPORA) == 10
    # Every model with one corpus and every corpus with one model: the two choices are read
    # independently (the full product, 220 compositions, took 90 s and tested nothing more).
    pairs = {(model, "cremad") for model in MODELS} | {("cnn_gru", data) for data in CORPORA}
    for model, data in sorted(pairs):
        cfg = compose_cfg([f"model={model}", f"data={data}", "data.root=/x"])
        label_runs(cfg)
        assert dict(cfg.choices) == {"model": model, "data": data}
        assert {model, data} <= set(cfg.tags)


def test_predict_scores_a_long_file_in_windows_and_as_a_whole(compose_cfg, tmp_path):
    import torch
    from hydra.utils import instantiate

    from ser.data.audio import load_mono
    from ser.serving.predict import predict, windows
    from ser.serving.runtime import CheckpointModel

    assert windows(25, 10, 3) == [(0, 10), (10, 20), (20, 25)]
    assert windows(21, 10, 3) == [(0, 10), (10, 21)]  # a tail too short to analyse joins its window
    assert windows(4, 10, 3) == [(0, 4)]
    torch.manual_seed(0)
    module = instantiate(compose_cfg(["model=cnn_gru", "features.normalize=utterance"]).model).eval()
    path = tmp_path / "long.wav"
    sf.write(path, np.random.default_rng(0).normal(0, 0.1, 25 * 16000), 16000)
    (row,) = predict(CheckpointModel(module), [path], batch_size=2, window_seconds=10)
    assert [(w["start"], w["end"]) for w in row["windows"]] == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    wave = torch.from_numpy(load_mono(path, 16000))
    whole = 0
    for w in row["windows"]:
        piece = wave[int(w["start"] * 16000):int(w["end"] * 16000)]
        with torch.no_grad():
            alone = module(piece[None], torch.tensor([len(piece)])).softmax(-1)[0].numpy()
        assert np.allclose(list(w["probs"].values()), alone, atol=1e-4)
        whole = whole + alone * (w["end"] - w["start"]) / 25
    assert np.allclose(list(row["probs"].values()), whole, atol=1e-4)
    assert row["emotion"] == max(row["probs"], key=row["probs"].get)
