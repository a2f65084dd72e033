"""Pretrained encoders: weights from a state_dict file, and a clear error when none exist."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchaudio

from ser.models.ssl import PretrainedWeightsUnavailable, SSLClassifier

from conftest import REPO


def test_checkpoint_state_dict_is_loaded_into_the_encoder(tmp_path):
    torch.manual_seed(3)
    source = torchaudio.models.hubert_base()
    path = tmp_path / "hubert.pt"
    torch.save(source.state_dict(), path)
    model = SSLClassifier(1, 4, encoder="hubert", checkpoint=str(path))
    for name, value in source.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name


def test_frozen_encoder_trains_only_the_head_and_stays_in_eval_mode():
    model = SSLClassifier(1, 4, encoder="wav2vec2", pretrained=False, num_layers=1).train()
    assert not model.encoder.training and model.head.training
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer_weights", "head"}
    tuned = SSLClassifier(1, 4, encoder="wav2vec2", pretrained=False, num_layers=1, freeze_encoder=False).train()
    assert tuned.encoder.training and all(p.requires_grad for p in tuned.encoder.parameters())


def test_no_weights_anywhere_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        SSLClassifier(1, 4, encoder="wavlm", pretrained=True)
    message = str(err.value)
    assert "model.checkpoint=PATH" in message and "model.pretrained=false" in message
    with pytest.raises(PretrainedWeightsUnavailable, match="does not exist"):
        SSLClassifier(1, 4, encoder="wavlm", checkpoint="/nonexistent/wavlm.pt")


def test_train_py_prints_the_weights_error_without_a_traceback(cache_dir, tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "model=wav2vec2", "model.checkpoint=/nowhere.pt",
                           "logger=csv", f"hydra.run.dir={tmp_path}"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "/nowhere.pt" in proc.stderr
