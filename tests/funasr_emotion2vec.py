"""Runs in FunASR's environment (tests/funasr_reference.py), never in ser's: FunASR's own
emotion2vec class with random weights at a small size, saved as FunASR distributes a checkpoint,
and its hidden states of a few clips, each encoded alone as FunASR's ``inference`` does.

    python funasr_emotion2vec.py OUT VARIANT

writes OUT/checkpoint/{config.yaml, model.pt, tokens.txt} and OUT/reference.pt. The variants
cover every branch of the architecture between them:

* ``base``: emotion2vec base's layout (post-LN, LayerNorm convolutions, ``normalize``, extra
  tokens, an ALiBi scale per layer and head), tiny, with the pre-training decoder and an emotion
  classifier in ``model.pt`` as the released checkpoints have; fewer ALiBi heads than heads (not
  a power of two) and an even positional kernel.
* ``other``: every other switch: GroupNorm convolutions (``extractor_mode: default``), a
  LayerNorm before the positional convolutions, pre-LN blocks, one ALiBi scale, no extra tokens,
  no pre-net, no ``normalize``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from funasr.models.emotion2vec.model import Emotion2vec
from omegaconf import OmegaConf

AUDIO = dict(
    type="AUDIO", feature_encoder_spec="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",  # 50 frames/s
    extractor_mode="layer_norm", conv_pos_width=12, conv_pos_depth=3, conv_pos_groups=4, conv_pos_pre_ln=False,
    prenet_depth=2, prenet_layerdrop=0.0, prenet_dropout=0.1, start_drop_path_rate=0.0, end_drop_path_rate=0.0,
    num_extra_tokens=3, init_extra_token_zero=False, use_alibi_encoder=True, alibi_scale=1.0,
    learned_alibi=False, alibi_max_pos=None, learned_alibi_scale=True, learned_alibi_scale_per_head=True,
    learned_alibi_scale_per_layer=True, num_alibi_heads=3, model_depth=2, local_grad_mult=1.0,
    mask_noise_std=0.01, mask_prob_min=None, mask_prob=0.5, inverse_mask=False, mask_prob_adjust=0.05,
    keep_masked_pct=0.0, mask_length=5, add_masks=False, remove_masks=False, mask_dropout=0.0,
    encoder_zero_mask=True, mask_channel_prob=0.0, mask_channel_length=64, ema_local_encoder=False,
    decoder=dict(decoder_dim=16, decoder_groups=4, decoder_kernel=3, decoder_layers=2, input_dropout=0.1,
                 add_positions_masked=False, add_positions_all=False, decoder_residual=True,
                 projection_layers=1, projection_ratio=2.0))
MODEL = dict(
    loss_beta=0.0, loss_scale=None, depth=2, start_drop_path_rate=0.0, end_drop_path_rate=0.0, num_heads=4,
    norm_eps=1e-5, norm_affine=True, encoder_dropout=0.1, post_mlp_drop=0.1, attention_dropout=0.1,
    activation_dropout=0.0, dropout_input=0.0, layerdrop=0.05, embed_dim=32, mlp_ratio=4.0,
    layer_norm_first=False, average_top_k_layers=2, end_of_block_targets=False, clone_batch=1,
    normalize=True, supported_modality="AUDIO")
VARIANTS = {
    "base": (MODEL, AUDIO, 5),
    "other": (dict(MODEL, layer_norm_first=True, normalize=False),
              dict(AUDIO, extractor_mode="default", conv_pos_pre_ln=True, conv_pos_width=9, prenet_depth=0,
                   num_extra_tokens=0, learned_alibi_scale_per_layer=False, learned_alibi_scale_per_head=False,
                   num_alibi_heads=4, decoder=None), 0),
}
LENGTHS = (16000, 9001, 4003, 23456)  # samples at 16 kHz, unequal: a batch of them is padded
TOKENS = ["angry", "happy", "neutral", "sad", "unuse_0"]


def randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Every tensor away from its initial value (LayerNorms at 1 and 0, the ALiBi scales at 1,
    the extra tokens at 0 would hide a mistake); one ALiBi scale negative, which FunASR clamps."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if name.endswith("alibi_scale"):
                tensor.uniform_(0.2, 2.0).view(-1)[0] = -0.5
            elif tensor.dim() == 1 or "extra_tokens" in name:
                tensor.add_(0.2 * torch.randn_like(tensor))
    return model.eval()


def states_of_each_clip_alone(model: Emotion2vec, waves: list[torch.Tensor], normalize: bool) -> list[torch.Tensor]:
    """[S, T, H] per clip: the first block's input, every block's output, the final output (after
    the final norm, if any), extra tokens dropped, as ``Emotion2vec.inference`` computes a clip."""
    blocks = [*model.modality_encoders["AUDIO"].context_encoder.blocks, *model.blocks]
    extra = model.modality_encoders["AUDIO"].modality_cfg.num_extra_tokens
    seen = []
    hooks = [blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))]
    hooks += [b.register_forward_hook(lambda m, args, out: seen.append(out[0])) for b in blocks]
    result = []
    with torch.no_grad():
        for wave in waves:
            seen.clear()
            source = F.layer_norm(wave, wave.shape) if normalize else wave
            out = model.extract_features(source.view(1, -1), padding_mask=None)
            result.append(torch.stack([s[0, extra:] for s in seen[:-1]] + [out["x"][0]]))
    for hook in hooks:
        hook.remove()
    return result


def main(out: Path, variant: str) -> None:
    model_conf, audio, vocab = VARIANTS[variant]
    folder = out / "checkpoint"
    folder.mkdir(parents=True)
    config = {"model": "Emotion2vec", "model_conf": dict(model_conf, modalities={"audio": audio})}
    OmegaConf.save(OmegaConf.create(config), folder / "config.yaml")
    kwargs = OmegaConf.to_container(OmegaConf.load(folder / "config.yaml"))  # as FunASR's AutoModel reads it
    torch.manual_seed(0)
    model = randomised(Emotion2vec(**kwargs, vocab_size=vocab if vocab else -1))
    torch.save(model.state_dict(), folder / "model.pt")
    if vocab:
        (folder / "tokens.txt").write_text("".join(f"{t}\n" for t in TOKENS))
    generator = torch.Generator().manual_seed(2)
    waves = [0.1 * torch.randn(n, generator=generator) for n in LENGTHS]
    states = states_of_each_clip_alone(model, waves, model_conf["normalize"])
    torch.save({"waves": waves, "states": states}, out / "reference.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
