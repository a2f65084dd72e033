"""The encoder path on real pretrained weights: Whisper tiny.en (tests/real_whisper.py), the one
real speech encoder that can be had offline. Random weights cannot show a wrong layer, a wrong
normalisation or frames taken from padding; speech the real model understands can: the states
ser keeps for a clip, handed to Whisper's own decoder, must say what was spoken."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import torch
from real_whisper import random_twin, whisper_tiny_en

from ser.data.audio import load_mono
from ser.frontends.encoders import EncoderFrontend

SENTENCE = "The weather is nice today and I am going to the park."


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> torch.Tensor:
    """eSpeak NG saying SENTENCE (22,050 Hz), read as the data side reads a clip (16 kHz)."""
    path = tmp_path_factory.mktemp("speech") / "park.wav"
    espeak = shutil.which("espeak-ng")
    assert espeak, "the real-encoder tests need eSpeak NG's speech (Debian: apt-get install espeak-ng; .ci/run installs it)"
    subprocess.run([espeak, "-v", "en-us", "-s", "140", "-w", str(path), SENTENCE], check=True)
    return torch.from_numpy(load_mono(path, 16000))


def kept_states(folder, wave: torch.Tensor) -> torch.Tensor:
    """Every hidden state ser keeps for the clip, ``[states, frames, hidden]``."""
    frontend = EncoderFrontend(str(folder), states="frames").eval()
    with torch.no_grad():
        states, frames = frontend.encode(wave[None], torch.tensor([len(wave)]))
    return states[0, :, :, : frames[0]].transpose(1, 2)


def transcript(last_state: torch.Tensor) -> str:
    """Whisper tiny.en's own decoder reading ``last_state`` [frames, hidden] as its encoder output."""
    from transformers import PreTrainedTokenizerFast, WhisperForConditionalGeneration
    from transformers.modeling_outputs import BaseModelOutput

    model = WhisperForConditionalGeneration.from_pretrained(whisper_tiny_en()).eval()
    with torch.no_grad():
        ids = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=last_state[None]), max_new_tokens=24)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(whisper_tiny_en() / "tokenizer.json"))
    return re.sub(r"[^a-z ]", "", tokenizer.decode(ids[0], skip_special_tokens=True).lower())


def test_the_states_ser_keeps_of_real_whisper_say_what_was_spoken(spoken, tmp_path):
    """Decoded from ser's last state (the frames covering the clip, after the final LayerNorm,
    from Whisper's own log-mel), the sentence comes back; from a random twin's, it does not."""
    real = kept_states(whisper_tiny_en(), spoken)
    assert real.shape[1] == (len(spoken) + 319) // 320  # 50 states a second of the clip
    assert "going to the park" in transcript(real[-1])
    twin = kept_states(random_twin(whisper_tiny_en(), tmp_path / "twin"), spoken)
    assert "park" not in transcript(twin[-1])


def test_every_state_ser_keeps_is_whispers_own_over_the_clips_frames(spoken):
    """The same states as transformers' Whisper on the 30 s window of its own feature
    extractor: each layer in its place, the clip's frames (not the padding's)."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    folder = whisper_tiny_en()
    mel = WhisperFeatureExtractor.from_pretrained(folder)([spoken.numpy()], sampling_rate=16000,
                                                        return_tensors="pt").input_features
    with torch.no_grad():
        reference = WhisperModel.from_pretrained(folder).get_encoder()(mel, output_hidden_states=True).hidden_states
    ours = kept_states(folder, spoken)
    assert len(reference) == len(ours) == 5  # the input embedding and 4 layers
    for layer, (expected, got) in enumerate(zip(reference, ours)):
        torch.testing.assert_close(got, expected[0, : got.shape[0]], atol=1e-4, rtol=1e-4, msg=f"state {layer}")


def test_real_whisper_exports_with_its_log_mel_in_the_graph(spoken, build, tmp_path):
    """Whisper tiny.en (a random head on its real states) exported: onnxruntime answers as the
    checkpoint does on the spoken sentence (the export's own check already held on its probe
    clips), and the graph's log-mel of it is transformers' extractor's."""
    from transformers import WhisperFeatureExtractor

    from ser.frontends.encoders import WhisperLogMel
    from ser.serving.export import export_module, parity
    from ser.serving.runtime import CheckpointModel, ExportedModel

    module, _ = build("hf", [f"features.name={whisper_tiny_en()}", "features.states=frames"])
    exported = export_module(module, tmp_path / "exported")
    clip = spoken.numpy()
    assert parity(ExportedModel(exported), CheckpointModel(module), [clip, clip[:40000]]) <= 1e-4
    extractor = WhisperFeatureExtractor.from_pretrained(whisper_tiny_en())
    expected = extractor([clip], sampling_rate=16000, return_tensors="pt").input_features
    assert float((WhisperLogMel(extractor)(spoken[None]) - expected).abs().max()) <= 1e-4


def test_lora_on_real_whisper_learns_only_adapters_and_merges_exactly(spoken, build):
    """LoRA on Whisper tiny.en's attention and feed-forward layers: a few steps on the spoken
    sentence move every adapter and the head, not one weight of the real encoder, and the
    adapters merged into it answer as the unmerged model, on the sentence and padded beside a part of it."""
    from conftest import train_a_few_steps
    from test_lora import assert_merged_equals_unmerged

    module, _ = build("hf", [f"features.name={whisper_tiny_en()}", "features.adapter=lora",
                             "features.lora.feed_forward=true", "features.lora.dropout=0.0"])
    module.train()
    base = {k: v.clone() for k, v in module.frontend.state_dict().items() if ".lora_" not in k}
    adapters = {k: v.clone() for k, v in module.state_dict().items() if ".lora_" in k}
    waves = torch.stack([spoken, torch.nn.functional.pad(spoken[:24000], (0, len(spoken) - 24000))])
    lengths = torch.tensor([len(spoken), 24000])
    optimiser = torch.optim.Adam(module.parameter_groups(), lr=1e-2)
    train_a_few_steps(module, optimiser, waves, lengths, torch.tensor([0, 3]), steps=2)
    after = module.state_dict()
    assert all(not torch.equal(after[k], v) for k, v in adapters.items())
    assert all(torch.equal(module.frontend.state_dict()[k], v) for k, v in base.items())
    assert_merged_equals_unmerged(module.frontend, waves, lengths, atol=1e-4, alone=False)  # alone: the tiny ones
