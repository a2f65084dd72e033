"""Pretrained speech encoders from Hugging Face ``transformers`` as the model's front end.

Any checkpoint ``AutoModel`` loads, by hub id or local folder: wav2vec 2.0 (base, large, lv60,
large-robust, XLS-R), HuBERT, WavLM, data2vec-audio, and Whisper's encoder; and emotion2vec's
FunASR checkpoints (``config.yaml`` + ``model.pt``), on ser's own implementation of data2vec 2.0
(:mod:`ser.frontends.emotion2vec`). The front end
turns waveforms into every hidden state (the projected CNN features and each transformer
layer's output, ``num_states`` of them, ``hidden`` wide), and hands the head either each
state's mean over the clip's real frames (``states=pooled``) or every frame
(``states=frames``, for heads that need time, such as attentive pooling).

A clip's states do not depend on what else is in its batch, for every family; what each
needs is read from its config, never guessed from its name:

* ``feat_extract_norm == "group"`` (wav2vec2-base, HuBERT-base, WavLM base/base-plus): the first
  convolution's GroupNorm normalises each channel over the whole time axis, padding
  included; here it is computed over each clip's real frames (a forward hook). These models
  were pretrained on unpadded crops, which is what a masked run reproduces.
* every family gets the attention mask, so no layer attends to padding; frames are counted
  with the model's own ``_get_feat_extract_output_lengths``.
* ``do_normalize`` (from the checkpoint's ``preprocessor_config.json``): each clip to zero mean
  and unit variance over its real samples, as the model's feature extractor does.
* Whisper's encoder takes exactly 30 s of log-mel (its feature extractor's): each clip is cut
  into 30 s windows, each window padded alone, and only the frames that cover real audio are
  kept, so a long clip is encoded whole rather than skipped or cut.

A frozen encoder (``freeze=all``) offers the data side its output as a frozen stage: the
DataModule computes it once per clip with this very module, on the model's device, and
caches it like the log-mel (:class:`EncoderStage`). With LoRA adapters (``adapter=lora``,
:mod:`ser.frontends.adapters`) the base stays frozen but the states change as the adapters
learn, so they are computed every step and nothing is cached.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from ser.errors import ConfigError, UserError, not_one_of
from ser.frontends import adapters, emotion2vec
from ser.frontends.spectral import MatmulMelPower
from ser.ops import frames_after, masked_group_norm, masked_mean, masked_standardize, real_frames

log = logging.getLogger(__name__)
FREEZE = ("all", "conv", "none")  # features.freeze
STATES = ("pooled", "frames")  # features.states
WHISPER_SECONDS = 30  # Whisper's encoder reads exactly one 30 s window of log-mel
STAGE_VERSION = 1  # bump when what the cached states mean changes


class EncoderUnavailable(UserError):
    pass


class EncoderFrontend(nn.Module):
    """Waveforms -> the encoder's hidden states, ``[B, num_states * hidden, frames]``."""

    normalize = "none"  # the encoder normalises (do_normalize) by itself; nothing per speaker
    injects = ("in_features", "num_states", "per_frame")  # the network arguments net_arguments gives

    def __init__(self, name: str, sample_rate: int = 16000, freeze: str = "all", states: str = "pooled",
                 gradient_checkpointing: bool = False, pretrained: bool = True, batch_size: int = 8,
                 adapter: str = "none", lora: dict | None = None):
        """``adapter="lora"``: LoRA adapters (``lora``: :class:`~ser.frontends.adapters.LoraOptions`)
        train beside the frozen encoder (``freeze`` must stay ``all``)."""
        super().__init__()
        self.name, self.sample_rate, self.freeze, self.states = name, sample_rate, freeze, states
        self.adapter, self.pretrained = adapter, pretrained
        self.batch_size = batch_size  # clips per call when the data side computes the states once
        check_choices(freeze, states, sample_rate, name)
        adapters.check_adapter(adapter, freeze)
        config = encoder_config(name)
        # The head weights every layer: a layer skipped at random (layerdrop) would hand it a
        # copy of the previous state instead.
        for key in ("layerdrop", "encoder_layerdrop"):
            if hasattr(config, key):
                setattr(config, key, 0.0)
        self.encoder = _load_encoder(name, config, pretrained)
        self.whisper = config.model_type == "whisper"
        self.preprocessor = _preprocessor(name, config)
        self.do_normalize = bool(getattr(self.preprocessor, "do_normalize", False)) and not self.whisper
        self.num_features = config.d_model if self.whisper else config.hidden_size
        self.num_states = (config.encoder_layers if self.whisper else config.num_hidden_layers) + 1
        self._sample_lengths: torch.Tensor | None = None
        self.graph_mel: WhisperLogMel | None = None  # transformers' extractor, unless an export asks
        if getattr(config, "feat_extract_norm", None) == "group":
            first = self.encoder.feature_extractor.conv_layers[0]
            first.layer_norm.register_forward_hook(self._group_norm_over_real_frames)
        positional = getattr(getattr(self.encoder, "encoder", None), "pos_conv_embed", None)
        for layer in getattr(positional, "layers", ()):  # data2vec-audio: a stack of convolutions
            layer.register_forward_hook(self._padding_zeroed)
        if gradient_checkpointing:
            self.encoder.gradient_checkpointing_enable()
        self._apply_freeze()
        self._base_digest: str | None = None
        if adapter == "lora":
            family = "emotion2vec" if self.preprocessor is None else config.model_type
            self.encoder = adapters.with_lora(self.encoder, adapters.LoraOptions(**(lora or {})), family)

    @staticmethod
    def preflight(**options) -> None:
        """``train.py``'s pre-flight: what the constructor would refuse, without the weights."""
        check_encoder_options(**options)

    # -- what the rest of the model and the data side read ------------------------------------
    def net_arguments(self) -> dict:
        return {"in_features": self.num_features, "num_states": self.num_states,
                "per_frame": self.states == "frames"}

    @property
    def min_samples(self) -> int:
        """The shortest clip that yields one frame (the CNN's receptive field; Whisper: one hop)."""
        if self.whisper:
            return self.preprocessor.hop_length
        samples = torch.arange(1, 4096)
        enough = self.encoder._get_feat_extract_output_lengths(samples) >= 1
        return int(samples[enough][0])

    @property
    def trains_encoder(self) -> bool:
        """Whether gradients flow into the encoder (its own weights, or adapters beside them)."""
        return self.freeze != "all" or self.adapter != "none"

    def frozen_stage(self) -> EncoderStage | None:
        if self.adapter != "none":
            log.info("features.adapter=%s: the encoder's states change while its adapters train, so they are "
                     "computed every step (on the model's device), not cached as a frozen stage", self.adapter)
        return None if self.trains_encoder else EncoderStage(self)

    # -- adapters: small checkpoints, merged graphs -------------------------------------------
    def frozen_base(self) -> dict | None:
        """What names the frozen base a LoRA checkpoint leaves out (its name and weights'
        digest); None where the checkpoint must hold every weight (no adapters, or a base
        built from its config rather than loaded, which nothing else could reproduce)."""
        if self.adapter == "none" or not self.pretrained:
            return None
        if self._base_digest is None:  # the base never changes: hash it once
            self._base_digest = weights_fingerprint(adapters.base_state(self.encoder))
        return {"name": self.name, "digest": self._base_digest}

    def is_base_weight(self, name: str) -> bool:
        """Whether the state-dict entry ``name`` (relative to this module) is the frozen base's."""
        return name.startswith("encoder.") and not adapters.is_adapter_weight(name)

    def merge_adapters(self) -> None:
        """Fold the adapters into the encoder's weights (an export's copy): one ordinary model."""
        if self.adapter != "none":
            self.encoder, self.adapter = adapters.merged(self.encoder), "none"

    def compute_by_matmul(self) -> None:
        """Whisper: compute its log-mel in the network from now on (:class:`WhisperLogMel`), one
        30 s window per clip: what an exported graph runs (``ser-export``). Other families read
        the waveform itself and need nothing."""
        if self.whisper:
            self.graph_mel = WhisperLogMel(self.preprocessor)

    def speaker_normalizer(self) -> None:
        return None  # nothing is normalised per speaker

    def frame_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        """Frames handed over for clips of ``samples``: one for pooled states."""
        if self.states == "pooled":
            return torch.ones_like(samples)
        return self.encoded_frames(samples)

    def encoded_frames(self, samples: torch.Tensor) -> torch.Tensor:
        if self.whisper:  # 50 frames a second; a window's frames cover its real samples
            return torch.div(samples + 319, 320, rounding_mode="floor").clamp(min=1)
        return self.encoder._get_feat_extract_output_lengths(samples).clamp(min=1)

    # -- training -----------------------------------------------------------------------------
    def _apply_freeze(self) -> None:
        self.encoder.requires_grad_(self.freeze == "none")
        if self.freeze == "conv":  # the standard fine-tuning recipe: the transformer trains
            self.encoder.requires_grad_(True)
            front = [self.encoder.conv1, self.encoder.conv2] if self.whisper else [self.encoder.feature_extractor]
            for module in front:
                module.requires_grad_(False)
        if self.freeze != "none" and hasattr(self.encoder, "feature_extractor"):
            # transformers' own flag as well: a frozen CNN is then not recomputed by gradient checkpointing
            getattr(self.encoder.feature_extractor, "_freeze_parameters", lambda: None)()

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.trains_encoder:
            self.encoder.eval()  # a frozen encoder keeps dropout and time masking off
        return self

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, gain_db: torch.Tensor | None = None,
                statistics: None = None):
        """Waveforms ``[B, T]`` with sample counts, or (from the data side's cache) states
        ``[B, num_states * hidden, frames]`` with frame counts -> states and frame counts.
        ``gain_db`` scales waveforms (a clip normalised by ``do_normalize`` ignores it); nothing is
        normalised per speaker, so there are no ``statistics``."""
        if inputs.dim() == 3:
            return inputs, lengths
        if gain_db is not None:
            inputs = inputs * 10 ** (gain_db[:, None] / 20)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trains_encoder):
            states, frames = self.encode(inputs, lengths)
        return self.handed_over(states, frames)

    def handed_over(self, states: torch.Tensor, frames: torch.Tensor):
        """``[B, S, H, T]`` states -> what the head reads: ``[B, S*H, T]`` (or ``[B, S*H, 1]``
        means over real frames, exact for a mean-pooling head since layer weighting and
        pooling are both linear)."""
        if self.states == "pooled":
            states = masked_mean(states, frames, dim=-1)[..., None]
            frames = torch.ones_like(frames)
        return states.flatten(1, 2), frames

    def encode(self, waves: torch.Tensor, lengths: torch.Tensor):
        """waves[B, T], lengths[B] -> every hidden state ``[B, S, H, frames]``, frames[B]."""
        if self.whisper:
            return self._encode_whisper(waves, lengths)
        mask = real_frames(lengths, waves.shape[-1])
        if self.do_normalize:
            waves = masked_standardize(waves, mask, (-1,), eps=1e-7)
        # Kept after the call: gradient checkpointing recomputes these layers (hooks included)
        # during the backward pass, which must see the same lengths.
        self._sample_lengths = lengths
        out = self.encoder(waves, attention_mask=mask.long(), output_hidden_states=True)
        frames = self.encoded_frames(lengths)
        states = torch.stack(out.hidden_states, 1).transpose(2, 3)  # [B, S, H, T]
        return states * real_frames(frames, states.shape[-1])[:, None, None, :].to(states.dtype), frames

    def _group_norm_over_real_frames(self, norm: nn.GroupNorm, args, output):
        """Forward hook on the first conv's GroupNorm: the same norm over real frames only."""
        if self._sample_lengths is None:
            return output
        x = args[0]
        conv = self.encoder.feature_extractor.conv_layers[0].conv
        frames = frames_after(self._sample_lengths, conv.kernel_size[0], conv.stride[0])
        if norm.num_groups != norm.num_channels:
            raise NotImplementedError("only a GroupNorm with one group per channel is restricted to real frames")
        return masked_group_norm(x, real_frames(frames, x.shape[-1])[:, None, :], norm)

    def _padding_zeroed(self, layer: nn.Module, args, output):
        """Forward hook on each layer of a stack of positional convolutions (data2vec-audio):
        its LayerNorm and activation make padded frames non-zero, which the next layer's
        kernel would read at a clip's last real frames; zero them, as a clip alone is padded."""
        if self._sample_lengths is None:
            return output
        frames = self.encoded_frames(self._sample_lengths)
        return output * real_frames(frames, output.shape[-1])[:, None, :].to(output.dtype)

    def _encode_whisper(self, waves: torch.Tensor, lengths: torch.Tensor):
        """Every clip in 30 s windows, each padded alone as Whisper was trained; the frames
        covering real audio of a clip's windows, end to end."""
        window = WHISPER_SECONDS * self.sample_rate
        if self.graph_mel is not None:  # a graph: each clip one window, its frames past the real ones zeroed
            states = self._whisper_states(self.graph_mel(waves))
            frames = self.encoded_frames(lengths.clamp(max=window))
            return states * real_frames(frames, states.shape[-1])[:, None, None, :].to(states.dtype), frames
        pieces, owner = [], []
        for clip, (wave, n) in enumerate(zip(waves, lengths.tolist())):
            for start in range(0, max(n, 1), window):
                pieces.append(wave[start : min(n, start + window)].float().cpu().numpy())
                owner.append(clip)
        mel = self.preprocessor(pieces, sampling_rate=self.sample_rate, return_tensors="pt").input_features
        states = self._whisper_states(mel.to(waves.device))
        kept = self.encoded_frames(torch.tensor([len(p) for p in pieces], device=waves.device))
        per_clip = [[] for _ in range(len(waves))]
        for piece, clip in enumerate(owner):
            per_clip[clip].append(states[piece, ..., : kept[piece]])
        joined = [torch.cat(parts, -1) for parts in per_clip]
        frames = torch.tensor([j.shape[-1] for j in joined], device=waves.device)
        longest = int(frames.max())
        return torch.stack([nn.functional.pad(j, (0, longest - j.shape[-1])) for j in joined]), frames


    def _whisper_states(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel ``[windows, mels, 3000]`` -> every hidden state ``[windows, S, H, 1500]``."""
        out = self.encoder(mel.to(next(self.encoder.parameters()).dtype), output_hidden_states=True)
        return torch.stack(out.hidden_states, 1).transpose(2, 3)


class WhisperLogMel(nn.Module):
    """Whisper's log-mel as its feature extractor computes it (``transformers``' torch path), as
    a module a graph can hold: each clip zero-padded to the 30 s window, a centred STFT
    (reflect padding) with the periodic Hann window, the last frame dropped, the extractor's own
    mel filters, log10 above 1e-10, floored 8 below the window's peak, then ``(x + 4) / 4``; the
    spectrum in MatMuls (:class:`~ser.frontends.spectral.MatmulMelPower`). One window per clip:
    a longer clip is cut at 30 s (ser-predict's windows are 10 s)."""

    def __init__(self, preprocessor):
        super().__init__()
        if getattr(preprocessor, "dither", 0.0):
            raise UserError("this Whisper feature extractor adds random dither to every clip: no graph "
                            "(and no two runs) would compute the same log-mel; set its dither to 0")
        self.n_fft, self.samples = preprocessor.n_fft, preprocessor.n_samples
        filters = torch.from_numpy(preprocessor.mel_filters).float()  # [bins, mels]
        self.power = MatmulMelPower(torch.hann_window(self.n_fft), self.n_fft, preprocessor.hop_length, filters)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        """waves[B, T] (zero-padded) -> log-mel ``[B, mels, 3000]``."""
        waves = waves[:, : self.samples]
        waves = nn.functional.pad(waves, (0, self.samples - waves.shape[-1]))
        centred = nn.functional.pad(waves[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")[:, 0]
        log = self.power(centred)[..., :-1].clamp(min=1e-10).log10()
        peak = log.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log, peak - 8.0) + 4.0) / 4.0


class EncoderStage:
    """A frozen encoder as the data side's frozen stage (``ser.data.cache.FrozenStage``):
    its states per clip, computed once in batches of similar length (bf16 on a CUDA GPU)."""

    costly = True  # a quick run computes it per batch instead of over the whole corpus first

    def __init__(self, frontend: EncoderFrontend):
        self.frontend = frontend
        self.width = frontend.num_states * frontend.num_features
        self.batch_size = frontend.batch_size
        per = "mean over each clip" if frontend.states == "pooled" else "every frame"
        self.description = f"{frontend.name} states ({frontend.num_states} layers, {per})"

    @property
    def device(self) -> torch.device:
        return next(self.frontend.parameters()).device

    def to(self, device: torch.device) -> EncoderStage:
        self.frontend.to(device)
        return self

    def cache_key(self) -> dict:
        """The encoder's identity and weights, which states, and how clips are prepared."""
        f = self.frontend
        return dict(encoder=f.name, config=f.encoder.config.to_json_string(use_diff=False),
                    weights=weights_fingerprint(f.encoder.state_dict()), states=f.states, sample_rate=f.sample_rate,
                    do_normalize=f.do_normalize, version=STAGE_VERSION)

    def frame_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        return self.frontend.frame_lengths(samples)

    def estimated_bytes(self, samples: int, clips: int) -> int:
        """The size of the cache for ``clips`` clips of ``samples`` in all (float32 rows)."""
        if self.frontend.states == "pooled":
            return 4 * self.width * clips
        frames = int(self.frontend.encoded_frames(torch.tensor(samples)))
        return 4 * self.width * frames

    @torch.no_grad()
    def compute(self, waves: torch.Tensor, lengths: torch.Tensor):
        """waves[B, T], lengths[B] -> states[B, width, frames], frames[B]"""
        on_gpu = waves.device.type == "cuda"
        dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast(waves.device.type, dtype=dtype, enabled=on_gpu):
            states, frames = self.frontend.encode(waves, lengths)
        return self.frontend.handed_over(states.float(), frames)


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A digest of every parameter and buffer (a state dict): a changed encoder gets a cache of
    its own, and a LoRA checkpoint names its base by it."""
    digest = hashlib.sha1()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


# -- loading ----------------------------------------------------------------------------------
def encoder_config(name: str):
    """The checkpoint's config: an emotion2vec checkpoint's ``config.yaml``, or a ``transformers``
    config from a folder or the hub (or its local cache)."""
    from transformers import AutoConfig

    funasr = emotion2vec.checkpoint_folder(name)
    if funasr is not None:
        return emotion2vec.Emotion2vecConfig.from_yaml(funasr / emotion2vec.CONFIG_FILE)
    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise unavailable(name, err) from None


def unavailable(name: str, err: BaseException) -> EncoderUnavailable:
    from huggingface_hub import constants

    if Path(name).expanduser().exists():
        return EncoderUnavailable(f"features.name={name!r} is a folder but not a transformers checkpoint "
                                  f"({type(err).__name__}: {str(err).splitlines()[0]}); it needs the "
                                  "config.json and weights that save_pretrained writes (or, for an "
                                  "emotion2vec checkpoint, FunASR's config.yaml and model.pt).")
    return EncoderUnavailable(
        f"The speech encoder features.name={name!r} is neither a local folder nor in the Hugging Face "
        f"cache at {constants.HF_HUB_CACHE} (and the hub could not be reached: {type(err).__name__}). "
        f"On a machine with internet, run `hf download {name}` (or `huggingface-cli download {name}`) "
        "and copy that cache here (HF_HOME says where it lives), or save the model with "
        "save_pretrained into a folder and pass features.name=/path/to/folder. For "
        f"{emotion2vec.WHERE_TO_GET}.")


def _load_encoder(name: str, config, pretrained: bool) -> nn.Module:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    if isinstance(config, emotion2vec.Emotion2vecConfig):
        model = emotion2vec.Emotion2vec
        return model.from_pretrained(emotion2vec.checkpoint_folder(name)) if pretrained else model(config)
    hf_logging.disable_progress_bar()  # one bar per weight file would interleave with training's
    try:
        model = AutoModel.from_pretrained(name, config=config) if pretrained else AutoModel.from_config(config)
    except (OSError, ValueError) as err:
        raise unavailable(name, err) from None
    if config.model_type == "whisper":
        model = model.get_encoder()  # the decoder is never used: do not keep it in memory
    return model


def _preprocessor(name: str, config):
    """The checkpoint's feature extractor (``do_normalize``; Whisper's log-mel), or the
    family's defaults when the checkpoint ships none; None for emotion2vec, which normalises
    its input itself as its ``config.yaml`` says."""
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    if isinstance(config, emotion2vec.Emotion2vecConfig):
        return None
    whisper = config.model_type == "whisper"
    try:
        return AutoFeatureExtractor.from_pretrained(name)
    except (OSError, ValueError):
        log.warning("%s has no preprocessor_config.json: using the %s defaults", name,
                    "Whisper feature extractor's" if whisper else "wav2vec 2.0 feature extractor's (do_normalize)")
        return WhisperFeatureExtractor() if whisper else Wav2Vec2FeatureExtractor()


def check_encoder_options(name: str, freeze: str = "all", states: str = "pooled", sample_rate: int = 16000,
                          adapter: str = "none", lora: dict | None = None, **_) -> None:
    """The front end's options and its checkpoint's config (found, not its weights loaded)."""
    check_choices(freeze, states, sample_rate, name)
    adapters.check_adapter(adapter, freeze)
    if adapter == "lora":
        adapters.LoraOptions(**(lora or {}))
    encoder_config(name)


def check_choices(freeze: str, states: str, sample_rate: int, name: str) -> None:
    if freeze not in FREEZE:
        raise not_one_of("features.freeze", freeze, FREEZE)
    if states not in STATES:
        raise not_one_of("features.states", states, STATES)
    if sample_rate != 16000:
        raise ConfigError(f"features.sample_rate={sample_rate}: {name} was trained on 16 kHz audio; "
                          "leave features.sample_rate at 16000 (every clip is resampled to it).")
