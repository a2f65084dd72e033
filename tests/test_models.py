"""Every `model=` choice: shapes, padding invariance, learning, and the module contract."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_encoders import ENCODER_FAMILIES
from torch import nn

from conftest import CONF, choice

ENCODER_PRESETS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if "/model/hf@model" in p.read_text())
# Every architecture, and model=hf on a tiny random encoder of every transformers family and
# emotion2vec (no weights can be downloaded here; the code path is the one real checkpoints take).
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml")
                if not p.stem.startswith("default") and p.stem not in ENCODER_PRESETS + ["hf"])
MODELS += [f"hf-{family}" for family in ENCODER_FAMILIES]


@pytest.mark.parametrize("name", MODELS)
def test_logits_shape_and_padding_invariance(build, name):
    module, num_classes = build(name)
    module.eval()
    torch.manual_seed(1)
    short, long = torch.randn(20000) * 0.1, torch.randn(44000) * 0.1
    with torch.no_grad():
        alone = module(short[None], torch.tensor([20000]))
        batch = torch.zeros(2, 44000)
        batch[0, :20000], batch[1] = short, long
        padded = module(batch, torch.tensor([20000, 44000]))
    assert alone.shape == (1, num_classes) and padded.shape == (2, num_classes)
    assert torch.allclose(alone[0], padded[0], atol=1e-3), (alone, padded)


@pytest.mark.parametrize("name", MODELS)
def test_a_few_steps_lower_the_loss(build, name):
    # A tiny random encoder says little about tones: fine-tune it (and so test fine-tuning).
    tune = name.startswith("hf-") and name != "hf-whisper"
    module, num_classes = build(name, ["augment=none", *(["features.freeze=none"] if tune else [])])
    module.train()
    torch.manual_seed(2)
    lengths = torch.randint(12000, 24000, (8,))
    labels = torch.arange(8) % num_classes
    t = torch.arange(24000) / 16000
    tones = torch.sin(2 * torch.pi * 250 * (1 + labels[:, None]) * t)  # one pitch per class
    waves = (tones + 0.3 * torch.randn(8, 24000)) * (torch.arange(24000)[None] < lengths[:, None])
    # A random Whisper's states are mostly its positional embeddings (clips differ by ~2% of
    # their size): its head needs a larger step to tell them apart in 20. The linear
    # baselines train at their configured rate.
    large_step = name == "hf-whisper" or name.startswith("egemaps")
    opt = torch.optim.Adam(module.parameters(), lr=1e-2 if large_step else 1e-3)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(module(waves, lengths), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", MODELS)
def test_very_short_clips_give_finite_logits(build, name):
    module, _ = build(name)
    module.eval()
    with torch.no_grad():
        logits = module(torch.randn(2, 4000) * 0.1, torch.tensor([2048, 4000]))
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["cnn_gru", "resnet18"])
def test_channels_last_changes_the_layout_not_the_predictions(build, name):
    nhwc, _ = build(name)
    nchw, _ = build(name, ["model.channels_last=false"])
    nchw.load_state_dict(nhwc.state_dict())
    convs = [m.weight for m in nhwc.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert any(not w.is_contiguous() for w in convs)  # (1-channel and 1x1 kernels are both)
    waves, lengths = torch.randn(3, 30000) * 0.1, torch.tensor([30000, 21000, 9000])
    with torch.no_grad():
        torch.testing.assert_close(nhwc.eval()(waves, lengths), nchw.eval()(waves, lengths),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.slow
# Every architecture; of the encoder families, one of each padding rule and Whisper (the others
# differ only inside the front end, which the tests above cover per family).
# The eGeMAPS baselines train end to end in test_baselines.py.
@pytest.mark.parametrize("name", [m for m in MODELS if not m.startswith(("hf-", "egemaps"))]
                         + ["hf-wav2vec2", "hf-wavlm_large", "hf-whisper"])
def test_one_epoch_of_train_py(train_cli, tmp_path, tiny_encoders, name):
    import json

    from conftest import SMALL

    args = [*choice(name, tiny_encoders), *SMALL, "logger=csv",
            "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2", "data.batch_size=8", "data.eval_batch_size=8"]
    train_cli(args, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["model"] == name.split("-")[0]  # named by the config choice
    module_of = {"resnet18": "resnet", "egemaps_linear": "functionals", "egemaps_mlp": "functionals"}
    choice_name = name.split("-")[0]
    assert results["model_class"].split(".")[2] == module_of.get(choice_name, choice_name)
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()


@settings(max_examples=25, deadline=None)
@given(freqs=st.integers(16, 37), frames=st.integers(1, 61), data=st.data())
def test_conv_stack_pools_before_relu_with_the_seeds_values_and_gradients(freqs, frames, data):
    """Seed 004's order of operations and its shortcut (the 1x1 stride-2 conv's output cropped
    to the map), on maps of odd and even size, any clip lengths: the same values and gradients."""
    from ser.models.blocks import ConvStack
    from ser.ops import frames_after, real_frames

    torch.manual_seed(0)
    stack = ConvStack(16, (8, 16, 16)).train().double()  # float64: equal but for rounding
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, frames), min_size=1, max_size=3)))
    x = torch.randn(len(lengths), 1, freqs, frames, dtype=torch.float64)

    def seed_order():  # seed 004: conv -> ReLU -> max-pool -> norm
        y, n = nn.functional.pad(x, (0, max(0, stack.time_factor - frames))), lengths
        inputs = y
        for k, (conv, norm) in enumerate(zip(stack.convs, stack.norms)):
            y = conv(y)
            if k == 1:
                y = y + stack.shortcut(inputs)[..., : y.shape[-2], : y.shape[-1]]
            n = frames_after(n, kernel=2, stride=2)
            y = norm(stack.pool(torch.relu(y))) * real_frames(n, y.shape[-1] // 2)[:, None, None, :]
        return y

    ours, _ = stack(x, lengths)
    grads = torch.autograd.grad(ours.square().sum(), list(stack.parameters()))
    reference = seed_order()
    torch.testing.assert_close(ours, reference)
    for g, r in zip(grads, torch.autograd.grad(reference.square().sum(), list(stack.parameters()))):
        torch.testing.assert_close(g, r)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), exporting=st.booleans())
def test_frame_mask_spells_out_the_real_frames_and_masked_max_reads_only_them(data, exporting):
    """The mask every padded map is multiplied by (and masked_max fills by), for maps of any rank
    and size: true exactly on each clip's frames, [B, 1, ..., 1, T] in torch and [B, 1, ..., T] in
    an export; the max over the frames is the clip's own, whatever the padding holds."""
    from unittest import mock

    from ser.ops import frame_mask, masked_max

    dims = data.draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    frames = data.draw(st.integers(1, 12))
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, frames), min_size=1, max_size=4)))
    x = torch.randn(len(lengths), data.draw(st.integers(1, 3)), *dims, frames)
    with mock.patch("torch.compiler.is_exporting", return_value=exporting):
        mask = frame_mask(lengths, x)
        padded = x.clone()
        padded[~mask.expand_as(x)] = 1e9  # what the padding holds must not matter
        maxima = masked_max(padded, lengths)
    spelt_out = dims if exporting else [1] * len(dims)
    assert mask.dtype == torch.bool and mask.shape == (len(lengths), 1, *spelt_out, frames)
    for row, n in zip(mask, lengths.tolist()):
        assert row[..., :n].all() and not row[..., n:].any()
    for row, clip, n in zip(maxima, x, lengths.tolist()):
        torch.testing.assert_close(row, clip[..., :n].flatten(1).max(-1).values)
