"""emotion2vec without FunASR: ser's data2vec 2.0 against FunASR's own class, and its checkpoint
loading, which takes all of a checkpoint or none of it.

FunASR runs in an environment of its own (tests/funasr_reference.py); these tests read what it
wrote: its checkpoint folder, and its hidden states of each clip encoded alone."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
import torch
from funasr_reference import funasr_checkpoint

from ser.data.loading import pad_batch
from ser.errors import UserError
from ser.frontends.emotion2vec import conv_spec
from ser.frontends.encoders import EncoderFrontend

from conftest import SMALL


@pytest.fixture(scope="module")
def made():
    return {variant: funasr_checkpoint(variant) for variant in ("base", "other")}


def padded(waves: list[torch.Tensor]):
    """Clips zero-padded into one batch as the data side's collation pads them, and their lengths."""
    batch, lengths, _ = pad_batch([(wave, 0) for wave in waves])
    return batch, lengths


@pytest.mark.parametrize("variant", ["base", "other"])
def test_every_hidden_state_is_funasrs_in_a_padded_batch_and_alone(made, variant):
    reference = torch.load(made[variant] / "reference.pt", weights_only=True)
    frontend = EncoderFrontend(str(made[variant] / "checkpoint"), states="frames").eval()
    batch, lengths = padded(reference["waves"])
    with torch.no_grad():
        states, frames = frontend.encode(batch, lengths)
        for clip, expected in enumerate(reference["states"]):  # [S, T, H], each clip encoded alone by FunASR
            assert frames[clip] == expected.shape[1] and states.shape[1] == expected.shape[0] == frontend.num_states
            torch.testing.assert_close(states[clip, ..., : frames[clip]].transpose(1, 2), expected, atol=1e-5, rtol=0)
            alone, _ = frontend.encode(batch[clip : clip + 1, : lengths[clip]], lengths[clip : clip + 1])
            torch.testing.assert_close(alone[0].transpose(1, 2), expected, atol=1e-5, rtol=0)


def test_fine_tuning_with_gradient_checkpointing_gives_the_same_gradients(made):
    waves, lengths = padded(torch.load(made["base"] / "reference.pt", weights_only=True)["waves"])
    grads = []
    for checkpointing in (False, True):
        frontend = EncoderFrontend(str(made["base"] / "checkpoint"), freeze="conv",
                                   gradient_checkpointing=checkpointing)
        frontend.encoder.train()
        torch.manual_seed(0)  # the same dropout draws; a recomputed block draws them again
        states, frames = frontend.encode(waves, lengths)
        states.square().sum().backward()
        grads.append({n: p.grad for n, p in frontend.encoder.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and not any(n.startswith("feature_extractor") for n in grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_a_checkpoint_under_a_key_loads_as_funasr_would(made, tmp_path):
    """FunASR's loader also takes the state dict under ``state_dict``/``model`` (its trainer's
    checkpoints); so does ser, with weights_only."""
    folder = shutil.copytree(made["base"] / "checkpoint", tmp_path / "nested")
    plain = torch.load(folder / "model.pt", weights_only=True)
    torch.save({"state_dict": plain, "epoch": 3}, folder / "model.pt")
    nested = EncoderFrontend(str(folder)).encoder.state_dict()
    direct = EncoderFrontend(str(made["base"] / "checkpoint")).encoder.state_dict()
    assert nested.keys() == direct.keys() and all(torch.equal(nested[k], direct[k]) for k in nested)


def broken(made, tmp_path, edit):
    folder = shutil.copytree(made["base"] / "checkpoint", tmp_path / "broken")
    edit(folder)
    with pytest.raises(UserError) as refused:
        EncoderFrontend(str(folder))
    return str(refused.value)


def edit_tensors(change):
    def edit(folder):
        tensors = torch.load(folder / "model.pt", weights_only=True)
        change(tensors)
        torch.save(tensors, folder / "model.pt")
    return edit


def test_a_missing_or_unexpected_tensor_is_named_and_nothing_loads(made, tmp_path):
    said = broken(made, tmp_path, edit_tensors(lambda t: t.pop("blocks.1.attn.qkv.weight")))
    assert "missing (ser's names): blocks.1.attn.qkv.weight (1)" in said and "not loaded" in said
    shutil.rmtree(tmp_path / "broken")
    said = broken(made, tmp_path, edit_tensors(lambda t: t.update({"blocks.9.attn.qkv.weight": torch.zeros(1)})))
    assert "unexpected: blocks.9.attn.qkv.weight (1)" in said


def test_another_size_or_another_architecture_is_refused_in_one_paragraph(made, tmp_path):
    def wider(folder):
        text = (folder / "config.yaml").read_text()
        (folder / "config.yaml").write_text(text.replace("embed_dim: 32", "embed_dim: 48"))

    said = broken(made, tmp_path, wider)
    assert "of another shape: modality_encoders.AUDIO.extra_tokens (1, 3, 32) (config.yaml makes it (1, 3, 48))" in said
    assert "\n" not in said
    shutil.rmtree(tmp_path / "broken")
    said = broken(made, tmp_path, lambda f: (f / "config.yaml").write_text("model: Paraformer\nmodel_conf: {}\n"))
    assert "says model: Paraformer, not Emotion2vec" in said
    shutil.rmtree(tmp_path / "broken")
    wav2vec2 = {"feature_extractor.conv_layers.0.conv.weight": torch.zeros(32, 1, 10)}
    said = broken(made, tmp_path, lambda f: torch.save(wav2vec2, f / "model.pt"))
    assert "unexpected: feature_extractor.conv_layers.0.conv.weight" in said and "missing (ser's names): " in said


def test_a_checkpoint_that_is_not_tensors_alone_is_not_unpickled(made, tmp_path):
    # a fairseq training checkpoint: its arguments are a pickled Namespace
    said = broken(made, tmp_path, lambda f: torch.save({"model": {}, "args": argparse.Namespace(lr=1)}, f / "model.pt"))
    assert "weights_only=True" in said
    shutil.rmtree(tmp_path / "broken")
    said = broken(made, tmp_path, lambda f: (f / "model.pt").unlink())
    assert "no model.pt" in said and "hf download emotion2vec/emotion2vec_base" in said


def test_the_convolution_spec_is_read_without_eval():
    assert conv_spec("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]") == (
        (512, 10, 5), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 3, 2), (512, 2, 2), (512, 2, 2))
    with pytest.raises(UserError, match="not a list of"):
        conv_spec("__import__('os').getcwd()")


def test_model_emotion2vec_trains_from_the_hub_cache_and_caches_its_states(train_cli, tiny_encoders, tmp_path,
                                                                         monkeypatch):
    """The preset as a user runs it: the hub id in the Hugging Face cache, FunASR's files in it."""
    from tiny_encoders import put_in_hub_cache

    put_in_hub_cache(tmp_path / "hub", "emotion2vec/emotion2vec_base", tiny_encoders["emotion2vec"])
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    args = [*SMALL, "model=emotion2vec", "logger=csv", "trainer.max_epochs=1", "data.batch_size=16"]
    out = train_cli(args, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"] == "emotion2vec" and 0 <= results["test/uar"] <= 1
    assert "emotion2vec/emotion2vec_base states (5 layers" in out.stdout + out.stderr
