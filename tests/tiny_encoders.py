"""Tiny random speech encoders of every transformers family, written the way real checkpoints
are (``save_pretrained``: config.json, weights, preprocessor_config.json), so that tests load
them through exactly the path a hub checkpoint takes. A few hidden units and two layers."""

from __future__ import annotations

from pathlib import Path

import torch

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             conv_dim=(32, 32, 32), conv_stride=(5, 4, 2), conv_kernel=(10, 4, 2),
             num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
# family -> (config class name, its arguments, do_normalize): the padding rules differ by
# feat_extract_norm ("group": wav2vec2/HuBERT/WavLM base; "layer": large, XLS-R, data2vec).
FAMILIES = {
    "wav2vec2": ("Wav2Vec2Config", dict(SMALL, feat_extract_norm="group"), True),
    "wav2vec2_large": ("Wav2Vec2Config", dict(SMALL, feat_extract_norm="layer", do_stable_layer_norm=True), True),
    "hubert": ("HubertConfig", dict(SMALL, feat_extract_norm="group"), False),
    "wavlm": ("WavLMConfig", dict(SMALL, feat_extract_norm="group", num_buckets=16, max_bucket_distance=40), False),
    "wavlm_large": ("WavLMConfig", dict(SMALL, feat_extract_norm="layer", do_stable_layer_norm=True,
                                        num_buckets=16, max_bucket_distance=40), True),
    "data2vec": ("Data2VecAudioConfig", dict(SMALL, num_conv_pos_embeddings=4, conv_pos_kernel_size=3), True),
    "whisper": ("WhisperConfig", dict(d_model=64, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                                      decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
                                      num_mel_bins=80, vocab_size=64, max_target_positions=16, pad_token_id=0,
                                      bos_token_id=1, eos_token_id=2, decoder_start_token_id=1), None),
}


def write_tiny_encoder(family: str, folder: Path, seed: int = 0) -> Path:
    import transformers
    from transformers import AutoModel, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    config_class, arguments, do_normalize = FAMILIES[family]
    torch.manual_seed(seed)
    model = AutoModel.from_config(getattr(transformers, config_class)(**arguments))
    model.save_pretrained(folder)
    extractor = (WhisperFeatureExtractor(feature_size=80) if family == "whisper"
                 else Wav2Vec2FeatureExtractor(do_normalize=do_normalize, return_attention_mask=True))
    extractor.save_pretrained(folder)
    return folder


ENCODER_FAMILIES = [*FAMILIES, "emotion2vec"]  # and FunASR's emotion2vec (tests/funasr_reference.py)


class TinyEncoders(dict):
    """family -> folder; emotion2vec's is FunASR's own, made when first asked for (it needs
    FunASR's environment, which most tests do not)."""

    def __missing__(self, family: str) -> Path:
        if family != "emotion2vec":
            raise KeyError(family)
        from funasr_reference import funasr_checkpoint

        self[family] = funasr_checkpoint("base") / "checkpoint"
        return self[family]


def family_of(hub_id: str) -> str:
    """The tiny family standing in for a hub checkpoint (by its name: tests only)."""
    name = hub_id.lower()
    for key, family in (("emotion2vec", "emotion2vec"), ("whisper", "whisper"), ("data2vec", "data2vec"), ("hubert", "hubert"),
                        ("wavlm-large", "wavlm_large"), ("wavlm", "wavlm"), ("xls-r", "wav2vec2_large"),
                        ("large", "wav2vec2_large"), ("wav2vec2", "wav2vec2")):
        if key in name:
            return family
    raise KeyError(hub_id)


def put_in_hub_cache(cache: Path, hub_id: str, folder: Path) -> None:
    """Lay ``folder`` out as huggingface_hub's cache holds a downloaded ``hub_id``:
    models--org--name/snapshots/<commit>/ and refs/main naming the commit."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{hub_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit, dirs_exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
