"""Pretrained self-supervised speech encoders (wav2vec 2.0, HuBERT, WavLM; base size) from
torchaudio, on the raw waveform, with a learned weighted sum of the transformer layers, mean
pooling over real frames and a small head.

Weights come from ``checkpoint`` (a state_dict of the matching torchaudio model), else from
the torchaudio bundle (downloaded once into torch's hub cache); ``pretrained=false`` builds
the encoder randomly initialised.

The base models normalise their first convolution with a GroupNorm over the whole time axis,
which would let padding change a clip's features; that one normalisation is computed over
each clip's real frames instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchaudio
from torch import nn

from ser.errors import ConfigError, UserError, not_one_of
from ser.models.blocks import classifier
from ser.ops import frames_after, masked_mean, masked_moments, padding, real_frames

ENCODERS = {
    "wav2vec2": (torchaudio.models.wav2vec2_base, "WAV2VEC2_BASE"),
    "hubert": (torchaudio.models.hubert_base, "HUBERT_BASE"),
    "wavlm": (torchaudio.models.wavlm_base, "WAVLM_BASE"),
}


class PretrainedWeightsUnavailable(UserError):
    pass


class SSLClassifier(nn.Module):
    def __init__(self, in_features: int, num_classes: int, encoder: str = "wav2vec2",
                 pretrained: bool = True, checkpoint: str | None = None, freeze_encoder: bool = True,
                 num_layers: int | None = None, head_hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        if in_features != 1:
            raise ConfigError(f"model.net.encoder={encoder} reads the raw waveform, not features of "
                              f"{in_features} values a frame: use features=waveform.")
        if encoder not in ENCODERS:
            raise not_one_of("model.net.encoder", encoder, sorted(ENCODERS))
        factory, bundle = ENCODERS[encoder]
        self.encoder_name = encoder
        self.encoder = factory()
        if checkpoint:
            self.encoder.load_state_dict(_read_state_dict(checkpoint))
        elif pretrained:
            self.encoder.load_state_dict(_bundle_state_dict(encoder, bundle))
        layers = self.encoder.encoder.transformer.layers
        if num_layers is not None:  # the lower layers carry most paralinguistic information
            del layers[num_layers:]
        self.freeze_encoder = freeze_encoder
        self.encoder.requires_grad_(not freeze_encoder)
        self.layer_weights = nn.Parameter(torch.zeros(len(layers)))
        width = self.encoder.encoder.feature_projection.projection.out_features
        self.head = classifier(width, head_hidden, num_classes, dropout)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # a frozen encoder keeps its dropout off
        return self

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            x, frames = self._conv_features(feats.squeeze(1), lengths)
            layers = self._transformer_layers(x, frames)
        weights = self.layer_weights.softmax(0)
        mixed = sum(w * h for w, h in zip(weights, layers))
        return self.head(masked_mean(mixed, frames, dim=1))

    def _conv_features(self, waves, lengths):
        """torchaudio's FeatureExtractor, with the first GroupNorm restricted to real frames."""
        x = waves.unsqueeze(1)
        for layer in self.encoder.feature_extractor.conv_layers:
            x = layer.conv(x)
            lengths = frames_after(lengths, layer.kernel_size, layer.stride)
            if isinstance(layer.layer_norm, nn.GroupNorm):
                x = _masked_instance_norm(x, lengths, layer.layer_norm)
            elif layer.layer_norm is not None:
                x = layer.layer_norm(x)
            x = nn.functional.gelu(x)
        return x.transpose(1, 2), lengths


    def _transformer_layers(self, x, frames) -> list[torch.Tensor]:
        """Every transformer layer's output. torchaudio's ``extract_features`` cannot mask
        WavLM (its attention takes a key padding mask, not an attention mask), so the layers
        are run here, each with the mask its attention expects."""
        encoder = self.encoder.encoder
        pad = padding(frames, x.shape[1])
        x = encoder.feature_projection(x).masked_fill(pad[..., None], 0.0)
        x = encoder.transformer._preprocess(x)  # convolutional positions (+ norm, dropout)
        wavlm = self.encoder_name == "wavlm"
        attention_mask = None if wavlm else (-10000.0 * pad[:, None, None, :].to(x.dtype)).expand(
            -1, 1, x.shape[1], -1)
        outputs, position_bias = [], None
        for layer in encoder.transformer.layers:
            x, position_bias = layer(x, attention_mask, position_bias=position_bias,
                                     key_padding_mask=pad if wavlm else None)
            outputs.append(x)
        return outputs


def _masked_instance_norm(x, lengths, norm: nn.GroupNorm):
    """GroupNorm with one group per channel (as in the base models), over real frames only."""
    if norm.num_groups != norm.num_channels:
        raise NotImplementedError("only per-channel GroupNorm is restricted to real frames")
    mask = real_frames(lengths, x.shape[-1])[:, None, :].to(x.dtype)
    mean, var = masked_moments(x, mask, dims=(-1,))
    x = (x - mean) / torch.sqrt(var + norm.eps)
    return (x * norm.weight[:, None] + norm.bias[:, None]) * mask


def _read_state_dict(path: str) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise PretrainedWeightsUnavailable(f"model.checkpoint={str(path)!r} does not exist.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _bundle_state_dict(encoder: str, bundle_name: str) -> dict:
    bundle = getattr(torchaudio.pipelines, bundle_name)
    try:
        return bundle.get_model().state_dict()
    except Exception as err:  # noqa: BLE001 - offline: URLError, OSError, HTTP errors...
        raise PretrainedWeightsUnavailable(
            f"Pretrained {encoder} weights are not available ({err.__class__.__name__}: {err}). "
            f"Either run once with internet access so torchaudio caches torchaudio.pipelines."
            f"{bundle_name} in {torch.hub.get_dir()}, or pass model.checkpoint=PATH to a "
            f"state_dict of torchaudio.models.{ENCODERS[encoder][0].__name__}() (for example "
            f"torch.save(torchaudio.pipelines.{bundle_name}.get_model().state_dict(), PATH) on a "
            f"machine that has it), or train from scratch with model.pretrained=false."
        ) from None
