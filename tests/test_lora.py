"""LoRA adapters on pretrained encoders (features.adapter=lora, ser/frontends/adapters.py): on the
tiny random encoder of every family, gradients reach only the adapters and the head, the base
stays bit-identical, a merged encoder equals the unmerged one; a LoRA checkpoint holds the
adapters and names its base, and loads (test step, resume, ser-predict --ckpt) as it was saved."""

from __future__ import annotations

import csv
import json
from copy import deepcopy

import pytest
import torch
from hydra.utils import instantiate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_encoders import ENCODER_FAMILIES, write_tiny_encoder

from ser.errors import ConfigError
from ser.frontends.adapters import BaseMismatch
from ser.frontends.encoders import EncoderFrontend
from ser.module import SERModule
from ser.serving.export import export

from conftest import SMALL, predict_cli, train_a_few_steps

LORA = ["model=hf", "features.adapter=lora"]


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    waves = torch.randn(len(lengths), max(lengths), generator=generator) * 0.1
    lengths = torch.tensor(lengths)
    return waves * (torch.arange(waves.shape[1]) < lengths[:, None]), lengths


def randomise_adapters(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Adapters as training leaves them: PEFT starts B at zero, which would make any merge exact."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=generator) * scale)


def assert_merged_equals_unmerged(frontend: EncoderFrontend, waves, lengths, atol: float = 1e-5,
                                  alone: bool = True) -> None:
    frontend.eval()
    merged = deepcopy(frontend)
    merged.merge_adapters()
    assert not any(".lora_" in name for name in merged.state_dict())  # one ordinary encoder
    with torch.no_grad():
        (a, frames_a), (b, frames_b) = frontend.encode(waves, lengths), merged.encode(waves, lengths)
        for i, n in enumerate(lengths.tolist() if alone else []):  # and each clip alone as in the padded batch
            alone_states, _ = frontend.encode(waves[i : i + 1, :n], lengths[i : i + 1])
            # Within the project's parity tolerance, not atol: a one-row batch goes through other
            # BLAS blocks (hypothesis found 1.7e-5 on one of 1,536 states of order 0.1).
            torch.testing.assert_close(alone_states[0, ..., : frames_a[i]], a[i, ..., : frames_a[i]], atol=1e-4,
                                       rtol=1e-4)
    assert torch.equal(frames_a, frames_b)
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("family", ENCODER_FAMILIES)
def test_only_adapters_and_head_learn_the_base_stays_and_a_merge_is_exact(family, compose_cfg, tiny_encoders):
    cfg = compose_cfg([*LORA, f"features.name={tiny_encoders[family]}", "features.lora.feed_forward=true",
                       "features.lora.dropout=0.0"])
    torch.manual_seed(0)
    module = instantiate(cfg.model).train()
    assert module.frontend.frozen_stage() is None  # its states change as the adapters learn: never cached
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in name or name.startswith("net.") for name in trainable)
    adapters = {name for name in trainable if ".lora_" in name}
    assert any(".lora_A." in name for name in adapters) and any(".lora_B." in name for name in adapters)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    optimiser = torch.optim.Adam(module.parameter_groups(), lr=1e-2)
    waves, lengths = padded_batch([16000, 12000, 9000, 16000])
    train_a_few_steps(module, optimiser, waves, lengths, torch.tensor([0, 1, 2, 3]))  # B moves first, then A
    after = module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert adapters <= changed  # every adapter learned: a layer the encoder never calls would not (WavLM)
    assert all(".lora_" in k or k.startswith(("net.", "val_uar_best")) for k in changed)  # the base: bit-identical
    assert_merged_equals_unmerged(module.frontend, *padded_batch([16000, 7000, 11000], seed=1))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rank=st.integers(1, 8), targets=st.sets(st.sampled_from(["q_proj", "k_proj", "v_proj", "out_proj"]), min_size=1),
       feed_forward=st.booleans(), lengths=st.lists(st.integers(400, 12000), min_size=1, max_size=4))
def test_wavlm_attention_with_adapters_is_transformers_own(rank, targets, feed_forward, lengths, tiny_encoders):
    """WavLM hands its projections' weights to F.multi_head_attention_forward; with adapters ser
    calls the projections instead. Untrained (B = 0) that is the plain encoder; trained, the merge
    (transformers' attention on merged weights) equals it."""
    folder = str(tiny_encoders["wavlm"])
    plain = EncoderFrontend(folder, states="frames").eval()
    options = {"rank": rank, "target_modules": sorted(targets), "feed_forward": feed_forward}
    adapted = EncoderFrontend(folder, states="frames", adapter="lora", lora=options).eval()
    waves, lengths = padded_batch(lengths, seed=rank)
    with torch.no_grad():
        torch.testing.assert_close(adapted.encode(waves, lengths)[0], plain.encode(waves, lengths)[0],
                                   atol=1e-5, rtol=1e-4)
    randomise_adapters(adapted, seed=rank)
    assert_merged_equals_unmerged(adapted, waves, lengths)


def test_adapter_options_are_checked_before_any_work(tiny_encoders):
    folder = str(tiny_encoders["whisper"])
    with pytest.raises(ConfigError, match="features.freeze must stay all"):
        EncoderFrontend.preflight(name=folder, freeze="conv", adapter="lora")
    with pytest.raises(ConfigError, match="features.adapter"):
        EncoderFrontend.preflight(name=folder, adapter="prefix")
    with pytest.raises(ConfigError, match="rank"):
        EncoderFrontend.preflight(name=folder, adapter="lora", lora={"rank": 0})
    with pytest.raises(ConfigError, match="fc1, fc2, k_proj, out_proj, q_proj, v_proj"):
        EncoderFrontend(folder, adapter="lora", lora={"target_modules": ["qkv"]})  # emotion2vec's name, not Whisper's


def test_a_saved_module_loads_as_it_was_saved_and_refuses_another_base(compose_cfg, tmp_path):
    folder = write_tiny_encoder("wav2vec2", tmp_path / "base")
    torch.manual_seed(0)
    module = instantiate(compose_cfg([*LORA, f"features.name={folder}"]).model).eval()
    randomise_adapters(module)
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    assert all(".lora_" in k for k in checkpoint["state_dict"] if k.startswith("frontend.encoder."))
    assert checkpoint["ser"]["frozen_base"] == module.frontend.frozen_base()
    torch.save(checkpoint, tmp_path / "lora.ckpt")
    reloaded = SERModule.from_checkpoint(tmp_path / "lora.ckpt").eval()
    waves, lengths = padded_batch([16000, 5000])
    with torch.no_grad():
        assert torch.equal(reloaded(waves, lengths), module(waves, lengths))
    write_tiny_encoder("wav2vec2", folder, seed=1)  # another model under the same name
    with pytest.raises(BaseMismatch, match="trained on the encoder .* digest"):
        SERModule.from_checkpoint(tmp_path / "lora.ckpt")


@pytest.mark.slow
def test_a_lora_run_checkpoints_adapters_resumes_and_predicts_as_its_test_step(train_cli, tmp_path):
    base = write_tiny_encoder("wavlm", tmp_path / "wavlm")
    run = tmp_path / "run"
    # callbacks=ema: the checkpoint holds the averaged weights and the training ones (both small).
    args = [*SMALL, *LORA, f"features.name={base}", "logger=csv", "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1", "data.batch_size=8", "callbacks=ema", "callbacks.early_stopping=null"]
    proc = train_cli([*args, "trainer.max_epochs=1"], run)
    assert "not cached as a frozen stage" in proc.stdout + proc.stderr + (run / "train.log").read_text()
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for weights in (state["state_dict"], state["current_model_state"]):
        frontend_keys = [k for k in weights if k.startswith("frontend.encoder.")]
        assert frontend_keys and all(".lora_" in k for k in frontend_keys)
    assert state["ser"]["frozen_base"]["name"] == str(base)

    # ser-predict --ckpt answers every test clip as the test step scored it.
    results = json.loads((run / "results.json").read_text())
    with open(run / "test_predictions.csv", newline="") as handle:
        scored = {row["path"]: row["predicted"] for row in csv.DictReader(handle)}
    proc = predict_cli("--ckpt", results["tested_ckpt"], *sorted(scored))
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = {line["path"]: line["emotion"] for line in map(json.loads, proc.stdout.splitlines())}
    assert answers == scored

    # Resumed for one more epoch from last.ckpt: the adapters go on from where they were.
    proc = train_cli([*args, "trainer.max_epochs=2", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"], tmp_path / "more")
    assert "Restoring states from the checkpoint" in proc.stdout + proc.stderr + (tmp_path / "more" / "train.log").read_text()
    resumed = torch.load(tmp_path / "more" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["ser"]["frozen_base"] == state["ser"]["frozen_base"]

    exported = export(run, tmp_path / "exported")  # the adapters merged: checked against the unmerged model
    assert json.loads((exported / "ser.json").read_text())["parity"]["max_abs_difference"] <= 1e-4

    write_tiny_encoder("wavlm", base, seed=7)  # the base changed under its name: one paragraph, no traceback
    proc = predict_cli("--ckpt", str(run / "checkpoints" / "last.ckpt"), next(iter(scored)))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "train the adapters again" in proc.stderr


@pytest.mark.parametrize("recipe, family", [("lora_wavlm_large", "wavlm_large"), ("lora_whisper", "whisper")])
def test_the_lora_recipes_build_adapters_on_their_encoder(recipe, family, compose_cfg, tiny_encoders, tmp_path):
    """Each recipe on a tiny encoder of its family: adapters and head train, at the recipe's rates."""
    cfg = compose_cfg([f"experiment={recipe}", f"data.root={tmp_path}", f"features.name={tiny_encoders[family]}"])
    module = instantiate(cfg.model)
    assert module.frontend.frozen_stage() is None
    head, adapters = module.parameter_groups()
    assert all(".lora_" in name for name, p in module.frontend.named_parameters() if p.requires_grad)
    assert len(adapters["params"]) == 2 * 2 * 2  # A and B on q and v of both tiny layers
    assert adapters["lr"] == cfg.model.encoder_lr and cfg.features.lora.rank == module.frontend.encoder.peft_config[
        "default"].r


@pytest.mark.parametrize("family, how", [
    ("wav2vec2", ["features.freeze=conv"]), ("wav2vec2", ["features.freeze=none"]),  # GroupNorm over real frames
    ("wavlm", ["features.adapter=lora"]), ("data2vec", ["features.freeze=none"]), ("whisper", ["features.adapter=lora"])])
def test_gradient_checkpointing_gives_the_gradients_of_a_plain_backward(family, how, compose_cfg, tiny_encoders):
    """features.gradient_checkpointing recomputes layers in the backward pass; ser's hooks (the
    GroupNorm over real frames) must see the same clips there, for fine-tuning and adapters alike."""
    grads = []
    for checkpointing in ("false", "true"):
        cfg = compose_cfg(["model=hf", f"features.name={tiny_encoders[family]}", *how, "features.lora.dropout=0.0",
                           f"features.gradient_checkpointing={checkpointing}"])
        torch.manual_seed(0)
        module = instantiate(cfg.model).train()
        for m in module.modules():  # dropout off: the two runs draw no random numbers to differ by
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        module.frontend.encoder.config.mask_time_prob = 0.0
        randomise_adapters(module)
        waves, lengths = padded_batch([16000, 7000])
        torch.nn.functional.cross_entropy(module(waves, lengths), torch.tensor([0, 1])).backward()
        grads.append({n: p.grad for n, p in module.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)
