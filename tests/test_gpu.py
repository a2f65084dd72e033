"""The CUDA paths: bf16 mixed-precision training through train.py, and the same numbers on
the GPU as on the CPU. They run wherever a CUDA device exists (CI has none: they skip there,
and the CPU side of each comparison is covered by the CPU tests)."""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

from conftest import SMALL
from test_models import MODELS

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def full_float32_on_the_gpu():
    """cuDNN convolutions default to TF32 (10-bit mantissa) on Ampere and later: compare
    float32 with float32, not with TF32."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_bf16_mixed_training_on_the_gpu_learns_and_reports(train_cli, tmp_path):
    # A network on the GPU's own front end (the default recipe's functionals are openSMILE's, on the CPU).
    train_cli([*SMALL, "model=cnn_gru", "logger=csv", "trainer=gpu", "trainer.max_epochs=6"], tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["test/uar"] >= 2 / results["num_classes"], results
    config = (tmp_path / "config.yaml").read_text()
    assert "precision: bf16-mixed" in config and "accelerator: gpu" in config
    state = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    # Mixed precision keeps float32 master weights: the checkpoint loads anywhere.
    assert all(v.dtype == torch.float32 for k, v in state["state_dict"].items() if v.is_floating_point())


@pytest.mark.parametrize("features", ["logmel", "mfcc"])
def test_front_end_on_the_gpu_matches_the_cpu(compose_cfg, features):
    module = instantiate(compose_cfg(["model=cnn_gru", f"features={features}"]).model).eval()
    assert type(module.frontend).__name__ == "FeatureFrontend"  # the spectral front end, not openSMILE
    waves, lengths = torch.randn(4, 40000) * 0.1, torch.tensor([40000, 31000, 16000, 4000])
    feats, frames = module.frontend(waves, lengths)
    gpu_feats, gpu_frames = module.frontend.cuda()(waves.cuda(), lengths.cuda())
    torch.testing.assert_close(gpu_frames.cpu(), frames)
    torch.testing.assert_close(gpu_feats.cpu(), feats, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_predictions_on_the_gpu_match_the_cpu(build, name):
    module = build(name)[0].eval()
    waves, lengths = torch.randn(3, 30000) * 0.1, torch.tensor([30000, 21000, 9000])
    with torch.no_grad():
        cpu = module(waves, lengths)
        module.cuda()
        gpu = module(waves.cuda(), lengths.cuda()).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = module(waves.cuda(), lengths.cuda()).float().cpu()
    torch.testing.assert_close(gpu, cpu, atol=2e-3, rtol=2e-3)
    # bf16 keeps 8 bits of mantissa: logits agree to about 1e-2 of their spread.
    assert (bf16 - cpu).abs().max() <= 0.05 * cpu.abs().max() + 0.05, (bf16, cpu)


def test_the_cache_is_held_on_the_gpu_and_gives_the_loaders_batches(compose_cfg):
    """cache_on_device=auto takes the GPU, and the batches gathered there are the loaders' own."""
    from types import SimpleNamespace

    from lightning.fabric.utilities import move_data_to_device
    from lightning.pytorch.accelerators import CUDAAccelerator

    cfg = compose_cfg([*SMALL, "model=cnn_gru"])  # a log-mel cache, the one worth holding on a GPU
    module = instantiate(cfg.model)
    batches = {}
    for setting in ("auto", False):
        dm = instantiate(cfg.data, cache_on_device=setting, frontend=module.frontend)
        dm.trainer = SimpleNamespace(accelerator=CUDAAccelerator(), world_size=1,
                                     strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
        dm.prepare_data()
        dm.setup()
        batches[setting] = [dm.on_after_batch_transfer(move_data_to_device(batch, "cuda"), 0)
                            for batch in dm.test_dataloader()]
    assert dm.resident is None and batches["auto"][0][0].is_cuda
    for gathered, loaded in zip(*batches.values(), strict=True):
        for a, b in zip(gathered, loaded):
            assert torch.equal(a, b)
