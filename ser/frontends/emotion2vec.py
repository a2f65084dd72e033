"""emotion2vec without FunASR: data2vec 2.0's audio encoder, built from the checkpoint's own
``config.yaml`` and loaded from its ``model.pt``, as FunASR and ModelScope distribute them.

emotion2vec (Ma et al., 2024, arXiv:2312.15185) is data2vec 2.0 (Baevski et al., 2023,
arXiv:2212.07525) pretrained on emotional speech; its checkpoints ship only for FunASR. This
module is the same network, written for ``ser``: it speaks the part of the ``transformers``
encoder interface that :class:`ser.frontends.encoders.EncoderFrontend` uses (``hidden_states``,
``_get_feat_extract_output_lengths``, ``feature_extractor``), so an emotion2vec checkpoint is one
more encoder there: frozen and cached once, its layers weighted, or fine-tuned.

A clip goes through, in order (names as in ``config.yaml``):

1. the waveform to zero mean and unit variance (``normalize``; FunASR's ``F.layer_norm`` of the
   whole clip, eps 1e-5);
2. strided convolutions (``feature_encoder_spec``), each with a LayerNorm over channels
   (``extractor_mode: layer_norm``; ``default``: a GroupNorm over time after the first);
3. LayerNorm and a linear projection to the model's width;
4. a convolutional positional encoder (``conv_pos_depth`` grouped convolutions with a LayerNorm
   and GELU each), added;
5. ``num_extra_tokens`` learned tokens in front, the pre-net blocks (``prenet_depth``) and the
   blocks (``depth``): transformer blocks whose attention carries an ALiBi bias, a slope per head
   times ``-|i - j|`` scaled by a learned factor (per layer and head), zero for the extra tokens;
6. the extra tokens dropped from every state.

The hidden states handed over are the pre-net's input and every block's output (pre-net and
main), ``prenet_depth + depth + 1`` of them, as ``transformers`` counts the embeddings and each
layer.

A clip's states do not depend on its batch: FunASR encodes one clip at a time, and these are its
states. Real frames are counted with the convolutions' own formula, a ``default``-mode GroupNorm
is taken over them alone, padded frames are zeroed before each positional convolution (a clip
alone is zero-padded there), and no attention reads a padded frame.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ser.errors import UserError
from ser.ops import frames_after, masked_group_norm, masked_standardize, real_frames

CONFIG_FILE, WEIGHTS_FILE = "config.yaml", "model.pt"  # FunASR's checkpoint folder
WHERE_TO_GET = ("emotion2vec checkpoints: `hf download emotion2vec/emotion2vec_base` (or "
                "emotion2vec_plus_large) on a machine with internet, or FunASR/ModelScope's download "
                "(iic/emotion2vec_base), a folder holding config.yaml and model.pt")


class CheckpointError(UserError):
    pass


# -- the checkpoint's config ------------------------------------------------------------------
@dataclass(frozen=True)
class Emotion2vecConfig:
    """What ``config.yaml`` says of the network (``model_conf`` and ``model_conf.modalities.audio``)."""

    model_type: ClassVar[str] = "emotion2vec"
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    norm_eps: float
    norm_affine: bool
    layer_norm_first: bool
    normalize: bool
    encoder_dropout: float
    attention_dropout: float
    activation_dropout: float
    post_mlp_drop: float
    dropout_input: float
    conv_layers: tuple[tuple[int, int, int], ...]  # (channels, kernel, stride) of each convolution
    extractor_mode: str
    conv_pos_width: int
    conv_pos_depth: int
    conv_pos_groups: int
    conv_pos_pre_ln: bool
    prenet_depth: int
    prenet_dropout: float
    num_extra_tokens: int
    use_alibi_encoder: bool
    num_alibi_heads: int
    alibi_scale: float
    learned_alibi_scale_per_layer: bool
    learned_alibi_scale_per_head: bool

    MODEL_KEYS: ClassVar[tuple[str, ...]] = (
        "embed_dim", "depth", "num_heads", "mlp_ratio", "norm_eps", "norm_affine", "layer_norm_first",
        "normalize", "encoder_dropout", "attention_dropout", "activation_dropout", "post_mlp_drop",
        "dropout_input")
    AUDIO_KEYS: ClassVar[tuple[str, ...]] = (
        "extractor_mode", "conv_pos_width", "conv_pos_depth", "conv_pos_groups", "conv_pos_pre_ln",
        "prenet_depth", "prenet_dropout", "num_extra_tokens", "use_alibi_encoder", "num_alibi_heads",
        "alibi_scale", "learned_alibi_scale_per_layer", "learned_alibi_scale_per_head")

    @property
    def hidden_size(self) -> int:
        return self.embed_dim

    @property
    def num_hidden_layers(self) -> int:
        return self.prenet_depth + self.depth

    def to_json_string(self, use_diff: bool = False) -> str:  # transformers' name: the cache key reads it
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_yaml(cls, path: Path) -> Emotion2vecConfig:
        from omegaconf import OmegaConf

        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        if raw.get("model") != "Emotion2vec":
            raise CheckpointError(f"{path} says model: {raw.get('model')}, not Emotion2vec: ser reads FunASR's "
                                  f"emotion2vec checkpoints only ({WHERE_TO_GET}).")
        model = raw.get("model_conf") or {}
        audio = (model.get("modalities") or {}).get("audio") or {}
        missing = [f"model_conf.{k}" for k in cls.MODEL_KEYS if k not in model]
        missing += [f"model_conf.modalities.audio.{k}" for k in (*cls.AUDIO_KEYS, "feature_encoder_spec")
                    if k not in audio]
        if missing:
            raise CheckpointError(f"{path} lacks {', '.join(missing)}: it is not the config.yaml an emotion2vec "
                                  f"checkpoint ships with ({WHERE_TO_GET}).")
        if audio.get("learned_alibi"):
            raise CheckpointError(f"{path} asks for learned ALiBi biases (learned_alibi: true), which no "
                                  "emotion2vec checkpoint uses and ser does not implement.")
        return cls(**{k: model[k] for k in cls.MODEL_KEYS}, **{k: audio[k] for k in cls.AUDIO_KEYS},
                   conv_layers=conv_spec(audio["feature_encoder_spec"]))


def conv_spec(text: str) -> tuple[tuple[int, int, int], ...]:
    """``feature_encoder_spec``, a Python expression such as ``[(512, 10, 5)] + [(512, 3, 2)] * 4``,
    read without ``eval``: lists of integer triples joined by ``+`` and repeated by ``*``."""
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(ast.dump(node))

    try:
        layers = value(ast.parse(str(text), mode="eval").body)
        if not layers or not all(isinstance(t, tuple) and len(t) == 3 for t in layers):
            raise ValueError(layers)
    except (SyntaxError, ValueError, TypeError):
        raise CheckpointError(f"feature_encoder_spec {text!r} is not a list of (channels, kernel, stride) "
                              "triples") from None
    return tuple(layers)


def checkpoint_folder(name: str) -> Path | None:
    """The FunASR checkpoint folder ``name`` stands for: a local folder holding ``config.yaml``
    (and no ``config.json``), or a hub id whose ``config.yaml`` is in the Hugging Face cache.
    None: ``name`` is something else (a ``transformers`` checkpoint, or nothing yet)."""
    local = Path(name).expanduser()
    if local.is_dir():
        return local if (local / CONFIG_FILE).is_file() and not (local / "config.json").is_file() else None
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, CONFIG_FILE)
        if isinstance(found, str):
            return Path(found).parent
    return None


# -- the network ------------------------------------------------------------------------------
def layer_norm32(x: torch.Tensor, norm: nn.LayerNorm | None, width: int, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last axis in float32 whatever the autocast (fairseq's Fp32LayerNorm)."""
    weight, bias = (norm.weight.float(), norm.bias.float()) if norm is not None else (None, None)
    return F.layer_norm(x.float(), (width,), weight, bias, eps).type_as(x)


class FeatureExtractor(nn.Module):
    """The strided convolutions, waveforms ``[B, T]`` -> ``[B, channels, frames]``."""

    def __init__(self, layers: tuple[tuple[int, int, int], ...], mode: str):
        super().__init__()
        if mode not in ("layer_norm", "default"):
            raise CheckpointError(f"extractor_mode {mode!r}: data2vec 2.0 knows layer_norm and default")
        self.mode, self.layers = mode, layers
        channels = [1] + [c for c, _, _ in layers]
        self.convs = nn.ModuleList(nn.Conv1d(i, o, k, stride=s, bias=False)
                                   for i, o, (_, k, s) in zip(channels, channels[1:], layers))
        normed = channels[1:] if mode == "layer_norm" else channels[1:2]
        self.norms = nn.ModuleList(nn.LayerNorm(c) if mode == "layer_norm" else nn.GroupNorm(c, c) for c in normed)

    def frames(self, samples: torch.Tensor) -> torch.Tensor:
        """Frames of clips of ``samples``: ``floor((n - k) / s) + 1`` per convolution (may be < 1)."""
        for _, kernel, stride in self.layers:
            samples = torch.div(samples - kernel, stride, rounding_mode="floor") + 1
        return samples

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waves[B, T], lengths[B] samples -> ``[B, channels, frames]`` and each clip's real frames."""
        x, frames = waves[:, None], lengths
        for i, conv in enumerate(self.convs):
            x = conv(x)
            frames = frames_after(frames, conv.kernel_size[0], conv.stride[0])
            if self.mode == "layer_norm":
                x = layer_norm32(x.transpose(1, 2), self.norms[i], x.shape[1]).transpose(1, 2)
            elif i == 0:  # a GroupNorm per channel over time: over the clip's real frames only
                x = masked_group_norm(x, real_frames(frames, x.shape[-1])[:, None, :], self.norms[0])
            x = F.gelu(x)
        return x, frames


class PositionalConvs(nn.Module):
    """``conv_pos_depth`` grouped convolutions, each with a LayerNorm (no affine) and GELU."""

    def __init__(self, config: Emotion2vecConfig):
        super().__init__()
        width, depth = config.embed_dim, config.conv_pos_depth
        kernel = max(3, config.conv_pos_width // depth)
        self.width, self.trim = width, 1 - kernel % 2  # an even kernel's extra frame is dropped
        self.pre_norm = nn.LayerNorm(width) if config.conv_pos_pre_ln else None
        self.convs = nn.ModuleList(nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=config.conv_pos_groups)
                                   for _ in range(depth))

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """x[B, T, C], real[B, T] -> the positional term to add, ``[B, T, C]``."""
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        x = x.transpose(1, 2)
        keep = real[:, None, :].to(x.dtype)
        for conv in self.convs:
            x = conv(x * keep)  # padded frames read as the zeros a clip alone is padded with
            if self.trim:
                x = x[..., : -self.trim]
            x = F.gelu(F.layer_norm(x.transpose(1, 2), (self.width,)).transpose(1, 2))
        return x.transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, out_dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.out_dropout = nn.Dropout(out_dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, steps, width = x.shape
        q, k, v = self.qkv(x).view(batch, steps, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                                  dropout_p=self.dropout if self.training else 0.0)
        return self.out_dropout(self.proj(attended.transpose(1, 2).reshape(batch, steps, width)))


class Block(nn.Module):
    """data2vec 2.0's transformer block (``AltBlock``), its parameters named as in the checkpoint."""

    def __init__(self, config: Emotion2vecConfig):
        super().__init__()
        width, c = config.embed_dim, config
        self.layer_norm_first = c.layer_norm_first
        self.norm1 = nn.LayerNorm(width, eps=c.norm_eps, elementwise_affine=c.norm_affine)
        self.attn = Attention(width, c.num_heads, c.attention_dropout, c.encoder_dropout)
        self.norm2 = nn.LayerNorm(width, eps=c.norm_eps, elementwise_affine=c.norm_affine)
        hidden = int(width * c.mlp_ratio)
        self.mlp = nn.Sequential()  # timm's Mlp: fc1, GELU, dropout, fc2, dropout
        self.mlp.fc1, self.mlp.act, self.mlp.drop1 = nn.Linear(width, hidden), nn.GELU(), nn.Dropout(c.activation_dropout)
        self.mlp.fc2, self.mlp.drop2 = nn.Linear(hidden, width), nn.Dropout(c.activation_dropout)
        self.post_mlp_dropout = nn.Dropout(c.post_mlp_drop)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.attn(self.norm1(x), bias)
            mlp = self.mlp(self.norm2(x))
            # data2vec 2.0 adds the MLP's output to itself here, not to x: kept, since a
            # checkpoint trained this way expects it (no emotion2vec checkpoint is pre-LN).
            return mlp + self.post_mlp_dropout(mlp)
        x = self.norm1(x + self.attn(x, bias))
        return self.norm2(x + self.post_mlp_dropout(self.mlp(x)))


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi's geometric slopes (Press et al., 2022): ``2^(-8i/n)`` for n a power of two, else
    those of the power below, then every other slope of twice that."""
    def powers(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    below = 2 ** math.floor(math.log2(heads))
    slopes = powers(below) if below == heads else powers(below) + powers(2 * below)[0::2][: heads - below]
    return torch.tensor(slopes)


class Emotion2vec(nn.Module):
    """emotion2vec's encoder: waveforms -> every hidden state, ``transformers``-style."""

    def __init__(self, config: Emotion2vecConfig):
        super().__init__()
        self.config, c = config, config
        self.feature_extractor = FeatureExtractor(c.conv_layers, c.extractor_mode)
        self.projection_norm = nn.LayerNorm(c.conv_layers[-1][0])
        self.projection = nn.Linear(c.conv_layers[-1][0], c.embed_dim)
        self.positional = PositionalConvs(c)
        self.extra_tokens = nn.Parameter(torch.zeros(1, c.num_extra_tokens, c.embed_dim)) if c.num_extra_tokens else None
        self.alibi_scale = None
        if c.use_alibi_encoder:
            layers = c.prenet_depth + c.depth if c.learned_alibi_scale_per_layer else 1
            heads = c.num_alibi_heads if c.learned_alibi_scale_per_head else 1
            self.alibi_scale = nn.Parameter(torch.full((layers, 1, heads, 1, 1), float(c.alibi_scale)))
        self.prenet_norm = None if c.layer_norm_first else nn.LayerNorm(c.embed_dim, eps=c.norm_eps,
                                                                        elementwise_affine=c.norm_affine)
        self.prenet_dropout = nn.Dropout(c.prenet_dropout)
        self.prenet = nn.ModuleList(Block(c) for _ in range(c.prenet_depth))
        self.dropout_input = nn.Dropout(c.dropout_input)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps, elementwise_affine=c.norm_affine) \
            if c.layer_norm_first else None
        self.checkpointing = False

    # -- the parts of the transformers interface EncoderFrontend uses --------------------------
    def _get_feat_extract_output_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor.frames(samples)

    def gradient_checkpointing_enable(self) -> None:
        self.checkpointing = True

    def forward(self, waves: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = True) -> SimpleNamespace:
        """waves[B, T] (``attention_mask`` 1 on real samples) -> ``hidden_states``, a tuple of
        ``prenet_depth + depth + 1`` states ``[B, frames, width]``, padded frames unspecified."""
        real_samples = torch.ones_like(waves, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        lengths = real_samples.sum(-1)
        if self.config.normalize:
            waves = masked_standardize(waves, real_samples, (-1,), eps=1e-5)
        features, frames = self.feature_extractor(waves, lengths)
        features = features.transpose(1, 2)
        real = real_frames(frames, features.shape[1])
        x = self.projection(layer_norm32(features, self.projection_norm, features.shape[-1]))
        x = x + self.positional(x, real)
        extra = self.config.num_extra_tokens
        if extra:
            x = torch.cat([self.extra_tokens.expand(x.shape[0], -1, -1).to(x.dtype), x], 1)
        biases = self._attention_biases(real)
        if self.prenet_norm is not None:
            x = self.prenet_norm(x)
        x = self.prenet_dropout(x)
        states = [x]
        for layer, block in enumerate([*self.prenet, *self.blocks]):
            if layer == len(self.prenet):
                x = self.dropout_input(x)
            if self.checkpointing and self.training:
                x = checkpoint(block, x, biases(layer), use_reentrant=False)  # recomputed in backward
            else:
                x = block(x, biases(layer))
            states.append(x)
        if self.norm is not None:
            states[-1] = self.norm(x)
        return SimpleNamespace(hidden_states=tuple(s[:, extra:] for s in states))

    def _attention_biases(self, real: torch.Tensor):
        """real[B, T] -> ``layer -> [B, heads, N, N]`` additive attention bias over the N =
        extra + T tokens: ALiBi (scaled for that layer) plus -inf on padded keys."""
        batch, steps = real.shape
        extra, heads = self.config.num_extra_tokens, self.config.num_heads
        keys = F.pad(torch.where(real, 0.0, float("-inf")), (extra, 0))[:, None, None, :]  # [B, 1, 1, N]
        if self.alibi_scale is None:
            return lambda layer: keys
        alibi_heads = self.config.num_alibi_heads
        distance = (torch.arange(steps)[None, :] - torch.arange(steps)[:, None]).abs().neg()
        alibi = (alibi_slopes(alibi_heads)[:, None, None] * distance).to(real.device)[None]  # [1, H_a, T, T]
        scale = self.alibi_scale.clamp_min(0)

        def bias(layer: int) -> torch.Tensor:
            scaled = alibi * scale[layer if len(scale) > 1 else 0].float()
            # zero for the extra tokens' rows and columns, and for heads beyond num_alibi_heads
            return F.pad(scaled, (extra, 0, extra, 0, 0, heads - alibi_heads)) + keys

        return bias

    # -- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, folder: Path) -> Emotion2vec:
        model = cls(Emotion2vecConfig.from_yaml(folder / CONFIG_FILE))
        model.load_state_dict(checkpoint_tensors(folder / WEIGHTS_FILE, model))
        return model


# Tensors of FunASR's model.pt that compute no hidden state: the pre-training decoder and the
# emotion classifier of the fine-tuned checkpoints (plus_*, base_finetuned).
UNUSED = (r"modality_encoders\.AUDIO\.decoder\..*", r"proj\.(weight|bias)")
# FunASR's name for each tensor (data2vec 2.0's module tree) -> this module's.
AUDIO = r"modality_encoders\.AUDIO\."
RENAMES = (
    (AUDIO + r"local_encoder\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.convs.\1.weight"),
    (AUDIO + r"local_encoder\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.norms.\1.\2"),  # layer_norm
    (AUDIO + r"local_encoder\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.norms.0.\1"),  # default
    (AUDIO + r"project_features\.1\.(weight|bias)", r"projection_norm.\1"),
    (AUDIO + r"project_features\.2\.(weight|bias)", r"projection.\1"),
    (AUDIO + r"relative_positional_encoder\.0\.(weight|bias)", r"positional.pre_norm.\1"),  # conv_pos_pre_ln
    (AUDIO + r"relative_positional_encoder\.1\.(\d+)\.0\.(weight|bias)", "positional.convs.{-1}.{1}"),  # pre_ln
    (AUDIO + r"relative_positional_encoder\.(\d+)\.0\.(weight|bias)", "positional.convs.{-1}.{1}"),
    (AUDIO + r"extra_tokens", "extra_tokens"),
    (AUDIO + r"alibi_scale", "alibi_scale"),
    (AUDIO + r"context_encoder\.norm\.(weight|bias)", r"prenet_norm.\1"),
    (AUDIO + r"context_encoder\.blocks\.(.+)", r"prenet.\1"),
    (r"(blocks\..+|norm\.(weight|bias))", r"\1"),
)


def renamed(key: str) -> str | None:
    """A checkpoint tensor's name here; None for one this module does not have. A replacement
    with ``{-1}`` names the positional convolution one below the checkpoint's Sequential index
    (whose first entry is a transpose)."""
    for pattern, replacement in RENAMES:
        match = re.fullmatch(pattern, key)
        if match is None:
            continue
        if "{-1}" in replacement:
            index, tensor = match.groups()[-2:]
            return replacement.replace("{-1}", str(int(index) - 1)).replace("{1}", tensor)
        return match.expand(replacement)
    return None


def checkpoint_tensors(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.pt`` (a state dict, or one under ``model``/``state_dict``/``model_state_dict``, as
    FunASR's loader accepts) renamed for ``model``; every tensor ``model`` has, of its shape, and
    nothing else but the known unused ones, or one paragraph naming what is wrong."""
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has {CONFIG_FILE} but no {WEIGHTS_FILE}: {WHERE_TO_GET}.")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unpickling error names the offending object
        raise CheckpointError(f"{path} cannot be read as tensors only (weights_only=True): "
                              f"{type(err).__name__}: {str(err).splitlines()[0]}") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    expected = model.state_dict()
    tensors, unexpected, wrong_shape = {}, [], []
    for key, tensor in loaded.items():
        name = renamed(key)
        if name is None or name not in expected:
            if not any(re.fullmatch(p, key) for p in UNUSED):
                unexpected.append(key)
            continue
        if name == "alibi_scale" and tensor.dim() == 4:  # older data2vec 2.0 checkpoints
            tensor = tensor[None]
        if tensor.shape != expected[name].shape:
            wrong_shape.append(f"{key} {tuple(tensor.shape)} (config.yaml makes it {tuple(expected[name].shape)})")
        tensors[name] = tensor
    missing = sorted(set(expected) - set(tensors))
    if missing or unexpected or wrong_shape:
        problems = [f"{what}: {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''} ({len(keys)})"
                    for what, keys in (("missing (ser's names)", missing), ("unexpected", unexpected),
                                       ("of another shape", wrong_shape)) if keys]
        raise CheckpointError(f"{path} does not hold the emotion2vec network its {CONFIG_FILE} describes, so it "
                              f"is not loaded: tensors {'; '.join(problems)}. Is it another model's checkpoint, "
                              f"or the config.yaml of another size? ({WHERE_TO_GET}).")
    return tensors
