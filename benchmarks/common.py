"""Helpers shared by the benchmarks: machine description, config composition, timing."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # benchmark this checkout, whatever `pip install -e` points at


def machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}; "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def save_checkpoint(module, path: Path) -> None:
    """A checkpoint in ser's format, as train.py writes it, without training."""
    checkpoint = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)  # what Lightning adds for ser-predict
    torch.save(checkpoint, path)


def timed(fn, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn`` (after one warm-up call): on a
    shared machine noise only ever adds time."""
    fn()
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


SETTLE_SECONDS = 0.2  # onnxruntime's idle threads spin-wait after a call: let them sleep before the next way


def timed_side_by_side(ways: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each round's call of each of ``ways`` (name -> function), the ways called in
    turn in every round (after one warm-up round): a machine whose speed drifts while the
    benchmark runs (a shared one) drifts for all of them alike. Each call starts after a pause,
    so that no way runs while another's thread pool is still spinning."""
    seconds = {name: [] for name in ways}
    for round_ in range(repeats + 1):
        for name, fn in ways.items():
            sync()
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            fn()
            sync()
            if round_:
                seconds[name].append(time.perf_counter() - start)
    return seconds


def paired_ratio(slower: list[float], faster: list[float]) -> float:
    """The median over rounds of one way's time over another's in the same round: what a
    drift of the machine's speed between rounds, or a spike within one, cannot move."""
    return statistics.median(a / b for a, b in zip(slower, faster))


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# Base-size configs of each encoder family (the transformers config classes' defaults are the
# base models; Whisper base spelt out). No weights can be downloaded here: the benchmarks time
# randomly initialised encoders, saved and loaded as real checkpoints are. Same compute.
BASE_ENCODERS = {
    "wav2vec2": ("Wav2Vec2Config", {}),
    "hubert": ("HubertConfig", {}),
    "wavlm": ("WavLMConfig", {}),
    "data2vec": ("Data2VecAudioConfig", {}),
    "whisper": ("WhisperConfig", dict(d_model=512, encoder_layers=6, encoder_attention_heads=8,
                                      encoder_ffn_dim=2048, decoder_layers=1, decoder_attention_heads=8,
                                      decoder_ffn_dim=2048, num_mel_bins=80)),
}


def base_encoder(family: str) -> Path:
    """A folder holding a randomly initialised base-size encoder of ``family``."""
    import transformers

    folder = Path.home() / ".cache" / "ser-bench" / "encoders" / family
    if not (folder / "config.json").is_file():
        config_class, arguments = BASE_ENCODERS[family]
        torch.manual_seed(0)
        transformers.AutoModel.from_config(getattr(transformers, config_class)(**arguments)).save_pretrained(folder)
        extractor = (transformers.WhisperFeatureExtractor(feature_size=80) if family == "whisper"
                     else transformers.Wav2Vec2FeatureExtractor(do_normalize=True))
        extractor.save_pretrained(folder)
    return folder


def encoder_family(preset: str) -> str | None:
    """The family of an encoder preset (``model=wavlm_large`` -> wavlm); None for other models."""
    text = (REPO / "conf" / "model" / f"{preset}.yaml").read_text()
    if preset != "hf" and "/model/hf@model" not in text:
        return None
    return next((f for f in BASE_ENCODERS if f in preset), "wavlm")
