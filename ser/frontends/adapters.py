"""LoRA adapters on a pretrained speech encoder (``features.adapter=lora``), through Hugging
Face's ``peft``: low-rank updates ``B @ A`` beside the frozen weights of chosen linear layers
(Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models", arXiv 2106.09685).

This module knows which layers each encoder family calls its attention projections and its
feed-forward layers, wraps the encoder in PEFT's :class:`~peft.LoraModel`, merges the adapters
back for an export, and names the frozen base a checkpoint leaves out (its weights' digest).

One family needs more than PEFT: WavLM's attention hands its projections' ``.weight`` straight
to ``F.multi_head_attention_forward``, so a LoRA layer in their place would never be called
(PEFT's layer answers ``.weight`` with the base weight) and its adapters would silently learn
nothing. Where adapters sit on a WavLM attention, it computes the same attention by calling
its projections (:func:`_attention_through_projections`), tested equal to transformers' own.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch
from torch import nn

from ser.errors import ConfigError, UserError, not_one_of

ADAPTERS = ("none", "lora")  # features.adapter
# Layer names (the last part of a module's dotted name, PEFT's ``target_modules``) by family.
# Query and value projections by default: the pair the LoRA paper found best for a given
# budget (its section 7.1, Table 5), and the pair Hugging Face's Whisper PEFT examples adapt.
QUERY_VALUE = {"transformers": ["q_proj", "v_proj"], "emotion2vec": ["qkv"]}  # emotion2vec: one fused projection
FEED_FORWARD = {"whisper": ["fc1", "fc2"], "emotion2vec": ["fc1", "fc2"],
                "transformers": ["intermediate_dense", "output_dense"]}  # wav2vec 2.0, HuBERT, WavLM, data2vec


@dataclass
class LoraOptions:
    """``features.lora``: PEFT's LoraConfig, in the config's words."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: list[str] | str = "auto"  # auto: the family's query and value projections
    feed_forward: bool = False  # also the feed-forward layers of every transformer block
    extra: dict = field(default_factory=dict)  # any other LoraConfig argument, as PEFT names it

    def __post_init__(self):
        if not (isinstance(self.rank, int) and self.rank >= 1):
            raise ConfigError(f"features.lora.rank={self.rank!r}: the adapters' rank is a whole number of at "
                              "least 1 (8 is PEFT's default and the LoRA paper's usual choice).")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"features.lora.dropout={self.dropout!r}: a probability in [0, 1).")

    def targets(self, family: str) -> list[str]:
        """The layer names the adapters sit on, for an encoder of ``family``."""
        if self.target_modules == "auto":
            names = list(QUERY_VALUE["emotion2vec" if family == "emotion2vec" else "transformers"])
        elif isinstance(self.target_modules, str):
            names = [self.target_modules]
        else:
            names = list(self.target_modules)
        if self.feed_forward:
            names += FEED_FORWARD.get(family, FEED_FORWARD["transformers"])
        return names


def check_adapter(adapter: str, freeze: str) -> None:
    if adapter not in ADAPTERS:
        raise not_one_of("features.adapter", adapter, ADAPTERS)
    if adapter == "lora" and freeze != "all":
        raise ConfigError(f"features.adapter=lora with features.freeze={freeze}: LoRA trains small adapters beside "
                          "an encoder whose own weights stay frozen, so features.freeze must stay all (its "
                          "default). freeze=conv|none fine-tunes the encoder's own weights instead: choose one "
                          "of the two.")


def with_lora(encoder: nn.Module, options: LoraOptions, family: str) -> nn.Module:
    """``encoder`` wrapped in PEFT's LoraModel: adapters on ``options.targets(family)``, every
    other weight frozen. Attribute access (``config``, ``feature_extractor``...) reaches the
    encoder through the wrapper."""
    from peft import LoraConfig, LoraModel
    from peft.utils.error import NoMatchingPeftModuleError

    targets = options.targets(family)
    config = LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=targets, bias="none", **options.extra)
    try:
        wrapped = LoraModel(encoder, config, "default")
    except (NoMatchingPeftModuleError, ValueError) as err:
        linear = sorted({name.rpartition(".")[2] for name, m in encoder.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"features.lora.target_modules={targets}: this {family} encoder has no layer of "
                          f"that name (PEFT: {str(err).splitlines()[0]}). Its linear layers are named "
                          f"{', '.join(linear)}.") from None
    if family == "wavlm":
        for module in wrapped.model.modules():
            if type(module).__name__ == "WavLMAttention" and _adapted(module):
                module.torch_multi_head_self_attention = types.MethodType(_attention_through_projections, module)
    return wrapped


def merged(encoder: nn.Module) -> nn.Module:
    """The encoder with its adapters folded into the weights they sit beside (PEFT's
    merge_and_unload): an ordinary model of its family, for a graph. WavLM's attention goes
    back to transformers' own."""
    plain = encoder.merge_and_unload()
    for module in plain.modules():
        module.__dict__.pop("torch_multi_head_self_attention", None)
    return plain


def is_adapter_weight(name: str) -> bool:
    """Whether a state-dict entry of the wrapped encoder is an adapter's (else the frozen base's)."""
    return ".lora_" in name


def base_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The frozen base's weights by the names they have without PEFT's wrapping: what a small
    checkpoint's digest of its base is taken over."""
    return {name.removeprefix("model.").replace(".base_layer.", "."): tensor
            for name, tensor in encoder.state_dict().items() if not is_adapter_weight(name)}


class BaseMismatch(UserError):
    pass


def check_base(saved: dict, found_digest: str) -> None:
    """Refuse a small checkpoint whose adapters were trained on another base than the one found."""
    if saved["digest"] != found_digest:
        raise BaseMismatch(
            f"This checkpoint holds LoRA adapters trained on the encoder {saved['name']!r} with weights of "
            f"digest {saved['digest']}, but the encoder found under that name now has digest {found_digest}: "
            "another release or a different model of the same name. Adapters only mean something on the "
            "base they were trained with; put that checkpoint back under the same name (or folder), or "
            "train the adapters again.")


def _adapted(attention: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(getattr(attention, name), BaseTunerLayer) for name in ("q_proj", "k_proj", "v_proj", "out_proj"))


def _attention_through_projections(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                                   gated_position_bias: torch.Tensor):
    """WavLMAttention's ``torch_multi_head_self_attention`` with its projections called as
    modules (so LoRA layers take part): the same scaled dot product, gated relative position
    bias, key padding mask and dropout. Returns no attention weights (ser never asks for them)."""
    batch, steps, _ = hidden_states.shape
    heads = self.num_heads

    def split(x: torch.Tensor) -> torch.Tensor:  # [B, T, H * D] -> [B, H, T, D]
        return x.view(batch, steps, heads, -1).transpose(1, 2)

    bias = gated_position_bias.view(batch, heads, steps, steps)
    if attention_mask is not None:
        padded = attention_mask.ne(1)[:, None, None, :]
        bias = bias.masked_fill(padded, float("-inf"))
    attended = nn.functional.scaled_dot_product_attention(
        split(self.q_proj(hidden_states)), split(self.k_proj(hidden_states)), split(self.v_proj(hidden_states)),
        attn_mask=bias.to(hidden_states.dtype), dropout_p=self.dropout if self.training else 0.0)
    return self.out_proj(attended.transpose(1, 2).reshape(batch, steps, -1)), None
