"""Pretrained speech encoders (ser/frontends/encoders.py, model=hf): loading, Whisper's windows, the
frozen-encoder cache, fine-tuning, and the offline error. Every encoder is a tiny random one
of its transformers family, saved with save_pretrained (tests/tiny_encoders.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate
from tiny_encoders import put_in_hub_cache, write_tiny_encoder

from ser.errors import ConfigError
from ser.frontends.encoders import EncoderFrontend, EncoderUnavailable
from ser.models.hf import EncoderHead

from conftest import REPO, SMALL, train_a_few_steps, train_here


def test_whisper_encodes_a_long_clip_in_30_second_windows(tiny_encoders):
    frontend = EncoderFrontend(str(tiny_encoders["whisper"]), states="frames").eval()
    torch.manual_seed(0)
    clip = torch.randn(31 * 16000) * 0.1
    with torch.no_grad():
        whole, frames = frontend.encode(clip[None], torch.tensor([len(clip)]))
        first, _ = frontend.encode(clip[None, : 30 * 16000], torch.tensor([30 * 16000]))
        rest, rest_frames = frontend.encode(clip[None, 30 * 16000 :], torch.tensor([16000]))
    assert frames.tolist() == [1550] and rest_frames.tolist() == [50]  # 50 frames a second, none dropped
    torch.testing.assert_close(whole[..., :1500], first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(whole[..., 1500:], rest, atol=1e-5, rtol=1e-5)


def test_a_hub_id_loads_from_the_local_hugging_face_cache_offline(tiny_encoders, tmp_path, monkeypatch):
    """The path a downloaded hub checkpoint takes: models--org--name/snapshots/<commit>/."""
    from huggingface_hub import constants

    put_in_hub_cache(tmp_path / "hub", "lab/tiny-wavlm", tiny_encoders["wavlm"])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    frontend = EncoderFrontend("lab/tiny-wavlm")
    assert frontend.encoder.config.model_type == "wavlm" and frontend.num_states == 3
    with pytest.raises(EncoderUnavailable) as err:
        EncoderFrontend("lab/not-downloaded")
    message = str(err.value)
    assert "lab/not-downloaded" in message and str(tmp_path / "hub") in message and "hf download" in message


def test_an_encoder_missing_offline_is_one_paragraph_from_train_py(cache_dir, tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "model=hf", "features.name=nobody/no-such-encoder",
                           "logger=csv", f"hydra.run.dir={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "nobody/no-such-encoder" in proc.stderr
    assert "save_pretrained" in proc.stderr and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(("states", "pooling"), [("pooled", "mean"), ("frames", "attentive")])
def test_training_on_the_cache_gives_the_logits_of_the_waveform(compose_cfg, tiny_encoders, tmp_path,
                                                               states, pooling):
    cfg = compose_cfg([*SMALL, "model=hf", f"features.name={tiny_encoders['wav2vec2']}", f"features.states={states}",
                       f"model.net.pooling={pooling}", f"data.cache_dir={tmp_path}"])
    torch.manual_seed(0)
    module = instantiate(cfg.model).eval()
    dm = instantiate(cfg.data, emotions=module.classes, frontend=module.frontend)
    dm.prepare_data()
    dm.setup("fit")
    waveforms = dm._open_waveforms(dm.clips)
    cache = dm._open_features(waveforms)
    assert cache.width == 3 * 32 and (tmp_path / "features").is_dir()
    paths = [c.path for c in dm.clips[:4]]
    with torch.no_grad():
        for path in paths:
            rows = torch.from_numpy(cache[path]).T[None]  # [1, width, frames]
            cached = module(rows, torch.tensor([rows.shape[-1]]))
            wave = torch.from_numpy(waveforms[path])[None]
            computed = module(wave, torch.tensor([wave.shape[-1]]))
            torch.testing.assert_close(cached, computed, atol=1e-4, rtol=1e-4)
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape[1] == 3 * 32 and (states == "frames" or batch[0].shape[-1] == 1)


def test_a_changed_encoder_gets_a_cache_of_its_own(tiny_encoders, tmp_path):
    other = write_tiny_encoder("wav2vec2", tmp_path / "other", seed=1)
    same = EncoderFrontend(str(tiny_encoders["wav2vec2"])).frozen_stage().cache_key()
    assert same == EncoderFrontend(str(tiny_encoders["wav2vec2"])).frozen_stage().cache_key()
    assert same["weights"] != EncoderFrontend(str(other)).frozen_stage().cache_key()["weights"]
    frames = EncoderFrontend(str(tiny_encoders["wav2vec2"]), states="frames").frozen_stage().cache_key()
    assert frames["states"] == "frames" and frames["weights"] == same["weights"]
    assert EncoderFrontend(str(tiny_encoders["wav2vec2"]), freeze="conv").frozen_stage() is None


def test_a_frozen_run_trains_from_the_cache_and_the_next_run_reuses_it(cache_dir, tiny_encoders, tmp_path, caplog):
    args = [*SMALL, "model=hf", f"features.name={tiny_encoders['hubert']}", "logger=csv", "trainer.max_epochs=2",
            f"data.cache_dir={tmp_path / 'cache'}"]
    with caplog.at_level(logging.INFO):
        assert isinstance(train_here(args, tmp_path / "first"), dict)
    assert "states (3 layers, mean over each clip), computed once, read by the loaders" in caplog.text
    assert "(about 0.1 MiB)" in caplog.text  # the size is said before it is written
    state = torch.load(tmp_path / "first" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_encoders["hubert"]).state_dict()
    for name, value in pretrained.items():  # frozen: the encoder is the checkpoint's own
        torch.testing.assert_close(state["state_dict"][f"frontend.encoder.{name}"], value)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert train_here(args, tmp_path / "second")["model"] == "hf"
    assert "Computing" not in caplog.text and "computed once, read by the loaders" in caplog.text


def test_a_quick_check_encodes_only_the_clips_it_touches(cache_dir, tiny_encoders, tmp_path, caplog):
    """fast_dev_run or limit_*_batches with a frozen encoder: no pass of the encoder over the
    whole corpus first (on MSP-Podcast with WavLM-large that would be hours; a real Whisper
    tiny.en on the built-in corpus had not reached its one batch after 15 minutes); the batches
    it touches are encoded as they come, and a later full run builds the whole cache. (The tiny
    wav2vec 2.0: the tiny Whisper's 30-second windows made this the suite's slowest test.)
    In-process (``train_here``): train.py's own run(), without an interpreter start per run."""
    args = [*SMALL, "experiment=emobox_probe", f"features.name={tiny_encoders['wav2vec2']}", "logger=csv",
            f"data.cache_dir={tmp_path / 'cache'}"]
    for name, quick in (("fdr", "++trainer.fast_dev_run=true"), ("limit", "debug=limit")):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            results = train_here([*args, quick], tmp_path / name)
        assert "computed per batch for the clips it touches" in caplog.text and "Computing" not in caplog.text, name
        assert not (tmp_path / "cache" / "features").exists()
        assert results["n_test"] > 0
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train_here([*args, "trainer.max_epochs=1"], tmp_path / "full")
    assert "Computing" in caplog.text  # the full run builds the cache, as the log says
    assert len(list((tmp_path / "cache" / "features").glob("*.json"))) == 1


def test_fine_tuning_updates_the_transformer_not_the_frozen_convolutions(compose_cfg, tiny_encoders):
    cfg = compose_cfg(["model=hf", f"features.name={tiny_encoders['wavlm']}", "features.freeze=conv",
                       "model.encoder_lr=1e-4"])
    module = instantiate(cfg.model).train()
    groups = module.parameter_groups()
    assert [g.get("lr") for g in groups] == [None, 1e-4]  # the head at optimizer.lr, the encoder slower
    before = {k: v.clone() for k, v in module.state_dict().items()}
    optimiser = torch.optim.Adam(groups, lr=1e-3)
    waves, lengths = torch.randn(4, 16000) * 0.1, torch.tensor([16000, 12000, 9000, 16000])
    train_a_few_steps(module, optimiser, waves, lengths, torch.tensor([0, 1, 2, 3]))
    after = module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(k.startswith("frontend.encoder.feature_extractor.") for k in changed)
    assert any(k.startswith("frontend.encoder.encoder.layers.") for k in changed)
    assert any(k.startswith("net.") for k in changed)
    assert module.frontend.encoder.config.layerdrop == 0.0  # every layer's state reaches the head


def test_layer_choice_and_pooling_are_checked():
    head = EncoderHead(32, 4, num_states=3, per_frame=False, layer="last").eval()
    states = torch.randn(2, 3 * 32, 1)
    only_last = states.clone()
    only_last[:, :64] = 0  # the first two states do not matter to a head on the last
    torch.testing.assert_close(head(states, torch.ones(2, dtype=torch.long)),
                               head(only_last, torch.ones(2, dtype=torch.long)))
    with pytest.raises(ConfigError, match="features.states=frames"):
        EncoderHead(32, 4, num_states=3, per_frame=False, pooling="attentive")
    with pytest.raises(ConfigError, match="from 0 to 2"):
        EncoderHead(32, 4, num_states=3, per_frame=True, layer=5)


def test_the_fine_tuning_recipe_runs_and_leaves_the_convolutions_as_they_were(train_cli, tiny_encoders, tmp_path):
    from transformers import AutoModel

    train_cli([*SMALL, "experiment=finetune_wavlm", f"features.name={tiny_encoders['wavlm']}", "logger=csv",
               "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
               "trainer.limit_test_batches=2", "data.batch_size=8"], tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    tuned = {k.removeprefix("frontend.encoder."): v for k, v in state["state_dict"].items()
             if k.startswith("frontend.encoder.")}
    pretrained = AutoModel.from_pretrained(tiny_encoders["wavlm"]).state_dict()
    conv = [k for k in pretrained if k.startswith("feature_extractor.")]
    layers = [k for k in pretrained if k.startswith("encoder.layers.") and k.endswith(".weight")]
    assert conv and all(torch.equal(tuned[k], pretrained[k]) for k in conv)
    assert any(not torch.equal(tuned[k], pretrained[k]) for k in layers)
    rates = [g["initial_lr"] for g in state["optimizer_states"][0]["param_groups"]]  # before the schedule
    assert rates == [1e-3, 5e-5]  # the head at optimizer.lr, the encoder at model.encoder_lr
    from ser.module import SERModule

    reloaded = SERModule.from_checkpoint(tmp_path / "checkpoints" / "last.ckpt").eval()
    waves = torch.randn(2, 16000) * 0.1
    assert torch.isfinite(reloaded(waves, torch.tensor([16000, 9000]))).all()


def test_the_warmup_rises_linearly_then_decays_to_zero():
    from ser.optim import warmup_then_cosine

    optimiser = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_then_cosine(optimiser, total_steps=100, warmup_fraction=0.1)
    rates = []
    for _ in range(100):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    assert rates[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert rates[10] == pytest.approx(1.0) and all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[-1] < 0.01
