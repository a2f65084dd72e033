"""The batched spectral front end: waveforms -> log-mel or MFCC, normalised.

It runs inside the LightningModule, so they run on the model's device, batched, and are
saved with the checkpoint. Frames are computed without centre padding so that a frame never
reads past the end of its clip: the features of a clip are the same alone or zero-padded
inside a batch, and ``frame_lengths`` says how many frames of each row are real.

The composition root hands the model's front end to the DataModule, which takes from it the
sample rate, the shortest usable clip and the *frozen stage*: the part whose output per clip
never changes while the model trains (here the log-mel; a frozen encoder's states could be
another). The data side computes that once per clip, with this very module, and hands its
output over instead of the waveform: the rest (MFCC, normalisation, gain, SpecAugment) runs
per batch either way. Normalisation per speaker is the one exception: the data side applies it
to the cached log-mel with this front end's :meth:`FeatureFrontend.speaker_normalizer`, once per
clip, because it needs every clip of a speaker (``ser.frontends.normalize``).
"""

from __future__ import annotations

import logging
import math

import torch
import torchaudio.functional as F
import torchaudio.transforms as T
from torch import nn

from ser.errors import not_one_of
from ser.frontends.normalize import SpeakerNormalizer, SpeakerStatistics
from ser.frontends.pooled import PooledStatistics
from ser.ops import frames_after, masked_moments, real_frames

log = logging.getLogger(__name__)
LOG_FLOOR = 1e-6  # added to the mel power before the log: silence stays finite
KINDS = ("logmel", "mfcc", "waveform")  # features.kind
NORMALIZATIONS = ("speaker", "utterance", "none")  # features.normalize


class FeatureFrontend(nn.Module):
    injects = ("in_features",)  # the network arguments this front end sizes (net_arguments)

    def __init__(self, kind: str = "logmel", sample_rate: int = 16000, n_fft: int = 2048,
                 hop_length: int = 512, n_mels: int = 128, n_mfcc: int = 40,
                 f_min: float = 0.0, f_max: float | None = None, normalize: str = "utterance"):
        super().__init__()
        if kind not in KINDS:
            raise not_one_of("features.kind", kind, KINDS)
        if normalize not in NORMALIZATIONS:
            raise not_one_of("features.normalize", normalize, NORMALIZATIONS)
        self.kind, self.n_fft, self.hop_length, self.normalize = kind, n_fft, hop_length, normalize
        self.n_mels, self.sample_rate = n_mels, sample_rate
        if kind == "waveform":  # raw samples for encoders with their own front end (wav2vec 2.0...)
            self.num_features = 1
            return
        self.pooled = PooledStatistics(n_mels)  # normalize=speaker: a speaker with no other clips at hand
        # torchaudio's MelSpectrogram/MFCC, taken apart: its power spectrum is |X|.pow(2), whose
        # complex magnitude costs a square root per bin; re^2 + im^2 gives the same power for
        # half the front end's time (measured: 12.7 -> 6.5 ms for 32 clips of 2 s on 2 cores).
        self.spectrogram = T.Spectrogram(n_fft=n_fft, hop_length=hop_length, center=False, power=None)
        self.mel_scale = T.MelScale(n_mels, sample_rate, f_min, f_max, n_stft=n_fft // 2 + 1)
        self.matmul_mel: MatmulMelPower | None = None  # torch's FFT, unless an export asks
        if kind == "mfcc":
            self.register_buffer("dct", F.create_dct(n_mfcc, n_mels, norm="ortho"))
        self.num_features = n_mels if kind == "logmel" else n_mfcc

    def net_arguments(self) -> dict:
        """What the network is sized from: the values per frame."""
        return {"in_features": self.num_features}

    @property
    def min_samples(self) -> int:
        """The shortest clip this front end can analyse: one STFT window (or one sample)."""
        return 1 if self.kind == "waveform" else self.n_fft

    def frozen_stage(self) -> LogMelStage | None:
        """What the data side may compute once per clip and cache: the log-mel of the
        spectral kinds; nothing for raw waveforms."""
        return LogMelStage(self) if self.kind in ("logmel", "mfcc") else None

    def speaker_normalizer(self) -> SpeakerNormalizer | None:
        """How the log-mel of a speaker's clips is standardised (normalize=speaker), else None."""
        return SpeakerNormalizer() if self.normalize == "speaker" and self.kind != "waveform" else None

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.kind == "waveform":
            return lengths
        return frames_after(lengths, self.n_fft, self.hop_length)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor, gain_db: torch.Tensor | None = None,
                statistics: SpeakerStatistics | None = None):
        """Features and their frame counts: ``features[B, F, frames], frame_lengths[B]``.

        ``inputs`` are waveforms ``[B, T]`` with sample counts, or (spectral kinds) the log-mel
        ``[B, n_mels, frames]`` with frame counts, as the DataModule's feature cache delivers it
        (with normalize=speaker: already standardised by the clip's speaker). A model normalising
        per speaker standardises a waveform's log-mel, or a log-mel handed over with
        ``statistics``, by ``statistics`` (the clips' speaker's: ser-predict, an exported model),
        else by the pooled training statistics. ``gain_db[B]`` (training augmentation) scales
        each clip's level.
        """
        with torch.autocast(inputs.device.type, enabled=False):  # STFT and log need float32
            inputs = inputs.float()
            if self.kind == "waveform":
                return self._waveform(inputs, lengths, gain_db)
            cached = inputs.dim() == 3
            mel, frames = (inputs, lengths) if cached else self.log_mel(inputs, lengths)
            by_speaker = self.normalize == "speaker"
            if by_speaker and (not cached or statistics is not None):
                statistics = statistics if statistics is not None else self.pooled.statistics()
                mel = self.speaker_normalizer().apply(mel.transpose(1, 2), statistics).transpose(1, 2)
            if gain_db is not None and not by_speaker:  # normalised: a dB has no known size there
                # A gain of g on the waveform adds log(g^2) to its log power, exactly wherever the
                # mel energy is above the log floor: applied here, it needs no waveform.
                mel = mel + gain_db[:, None, None] * (math.log(10) / 10)
            return self._finish(mel, frames)

    def log_mel(self, waves: torch.Tensor, lengths: torch.Tensor):
        """waves[B, T], lengths[B] -> log-mel[B, n_mels, frames] (unnormalised), frame_lengths[B]"""
        if waves.shape[-1] < self.n_fft:  # keep one (partly padded) frame for tiny inputs
            waves = nn.functional.pad(waves, (0, self.n_fft - waves.shape[-1]))
        return torch.log(self.mel_power(waves) + LOG_FLOOR), self.frame_lengths(lengths)

    def changed_log_mel(self, changed: torch.Tensor, clean: torch.Tensor, lengths: torch.Tensor):
        """The log-mel of the ``changed`` waveforms (channel augmentation), ``[B, n_mels, frames]``,
        its frame counts, and ``[B, n_mels]``: how far each band's mean over a clip's real frames
        moved from the ``clean`` waveforms' (see ``SERModule._through_channel``). The log-mel is
        handed on, so a step computes it once; the shift has no gradient: it only moves statistics."""
        with torch.autocast(changed.device.type, enabled=False):
            moved, frames = self.log_mel(changed.float(), lengths)
            with torch.no_grad():
                before, _ = self.log_mel(clean.float(), lengths)
                real = real_frames(frames, moved.shape[-1])[:, None, :]
                shift = masked_moments(moved - before, real, dims=(2,))[0][..., 0]
        return moved, frames, shift

    def mel_power(self, waves: torch.Tensor) -> torch.Tensor:
        """waves[B, T] -> the mel-weighted power of each frame's windowed DFT, ``[B, n_mels, frames]``."""
        if self.matmul_mel is not None:
            return self.matmul_mel(waves)
        spectrum = self.spectrogram(waves)
        return self.mel_scale(spectrum.real.square() + spectrum.imag.square())

    def compute_by_matmul(self) -> None:
        """Compute the mel power with :class:`MatmulMelPower` from now on: what an exported graph
        runs (``ser-export``), since runtimes without a fast FFT (onnxruntime's STFT operator) are
        many times slower than its MatMuls. The same numbers within float rounding (tested)."""
        self.matmul_mel = MatmulMelPower(self.spectrogram.window, self.n_fft, self.hop_length, self.mel_scale.fb)

    def _waveform(self, waves, lengths, gain_db):
        if gain_db is not None:
            waves = waves * 10 ** (gain_db[:, None] / 20)
        return waves.unsqueeze(1) * real_frames(lengths, waves.shape[-1]).unsqueeze(1).to(waves.dtype), lengths

    def _finish(self, feats: torch.Tensor, frames: torch.Tensor):
        """MFCC from the (normalised) log-mel, per-utterance normalisation, padding zeroed."""
        mask = real_frames(frames, feats.shape[-1]).unsqueeze(1).to(feats.dtype)  # [B, 1, frames]
        if self.kind == "mfcc":  # the log-mel floor is torchaudio's MFCC(log_mels=True)
            feats = torch.matmul(feats.transpose(-1, -2), self.dct).transpose(-1, -2)
        if self.normalize == "utterance":
            # One mean and std per clip over its real frames: removes recording gain, keeps
            # the spectral shape and its dynamics, which carry emotion.
            mean, var = masked_moments(feats, mask, dims=(1, 2))
            feats = (feats - mean) / (var.sqrt() + 1e-5)
        return feats * mask, frames


class MatmulMelPower(nn.Module):
    """The mel-weighted ``|STFT|^2`` of windowed frames without centre padding, as ``torch.stft``
    and ``MelScale`` give it, in MatMuls: the DFT of ``N = N1 * N2`` points split once
    (Cooley-Tukey) into ``N1``-point DFTs over samples ``N2`` apart (the window folded into their
    matrices, one per ``n2``) and ``N2``-point DFTs over their results (the twiddle factors folded
    into theirs). A real frame's first-stage outputs ``k1`` and ``N1 - k1`` are complex conjugates,
    so only ``k1 <= N1 / 2`` are computed and the second stage reads each twice. At N = 2048
    (64 x 32) that is 0.28 million multiply-adds a frame against a dense basis's 4.2 million (15x
    fewer), still about twice torch's FFT in time (``benchmarks/dft.py``).

    Framing is one Gather from the clips' samples side by side (``waves.T``), which leaves the
    clips as the last axis; frames and clips stay the last axes throughout, so every product is one
    batched MatMul and the only transposes move whole runs of them. The mel filters are applied to
    the bins in the order the second stage leaves them (their rows permuted once, here). The
    matrices are made in float64 and are not saved with the checkpoint (they follow from
    ``n_fft``, the window and the filters).
    """

    def __init__(self, window: torch.Tensor, n_fft: int, hop_length: int, mel_filters: torch.Tensor):
        super().__init__()
        n2 = max(d for d in range(1, n_fft + 1) if n_fft % d == 0 and d * d <= n_fft)  # N1 >= N2, both near sqrt(N)
        n1 = n_fft // n2
        half = n1 // 2 + 1  # first-stage outputs computed: k1 = 0 .. N1/2
        self.n_fft, self.hop_length, self.n1, self.n2, self.half = n_fft, hop_length, n1, n2, half
        self.bins = n_fft // 2 + 1
        self.k2 = -(-self.bins // n1)  # second-stage outputs kept: bin k1 + N1 * k2 up to n_fft / 2
        f64 = torch.float64
        angle = 2 * math.pi * torch.outer(torch.arange(half, dtype=f64), torch.arange(n1, dtype=f64)) / n1
        dft = torch.cat([torch.cos(angle), -torch.sin(angle)])  # [(re, im) x k1, n1]
        window = window.to(f64).reshape(n1, n2)  # sample N2 * n1 + n2 of a frame
        self.register_buffer("first", (dft[None] * window.T[:, None, :]).float(), persistent=False)  # [n2, 2 half, n1]
        m2 = torch.arange(n2, dtype=f64)[None, :, None]
        k2 = torch.arange(self.k2, dtype=f64)[None, None, :]

        def twiddled_dft(k1):  # [half, n2, k2]: the twiddle of row k1, then the N2-point DFT
            angle = -2 * math.pi * (m2 * k1[:, None, None] / n_fft + m2 * k2 / n2)
            return torch.cos(angle), torch.sin(angle)

        cos, sin = twiddled_dft(torch.arange(half, dtype=f64))
        cos_m, sin_m = twiddled_dft(n1 - torch.arange(half, dtype=f64))  # row N1 - k1, from conj(row k1)
        # (re + i im)(cos + i sin) and (re - i im)(cos_m + i sin_m), as
        # [real, real of the mirror, imaginary, imaginary of the mirror] x k2 from [re; im] x n2.
        of_re, of_im = torch.cat([cos, cos_m, sin, sin_m], 2), torch.cat([-sin, sin_m, cos, -cos_m], 2)
        second = torch.cat([of_re, of_im], 1).transpose(1, 2)  # [half, 4 k2, 2 n2]
        self.register_buffer("second", second.float(), persistent=False)
        # Bin k1 + N1 k2 is in row k1 (k1 < half) or the mirror of row N1 - k1, at k2; each bin once.
        basis = torch.zeros(half, 2, self.k2, mel_filters.shape[1], dtype=mel_filters.dtype)
        for k in range(self.bins):
            k1, k2 = k % n1, k // n1
            basis[(k1, 0, k2) if k1 < half else (n1 - k1, 1, k2)] = mel_filters[k]
        self.register_buffer("mel", basis.reshape(-1, mel_filters.shape[1]).T.contiguous(), persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        batch, samples = waves.shape
        frames = (samples - self.n_fft) // self.hop_length + 1
        # Sample N2 * n1 + n2 of frame f, as [n2, n1, F, B]: clips last, gathered in runs of B.
        device = waves.device
        samples_of = (torch.arange(self.n2, device=device)[:, None, None]
                      + self.n2 * torch.arange(self.n1, device=device)[None, :, None]
                      + self.hop_length * torch.arange(frames, device=device)[None, None, :])
        framed = waves.T.index_select(0, samples_of.reshape(-1))
        first = self.first @ framed.reshape(self.n2, self.n1, frames * batch)  # [n2, (re, im) x half, F * B]
        first = first.reshape(self.n2, 2, self.half, -1).permute(2, 1, 0, 3).reshape(self.half, 2 * self.n2, -1)
        squared = (self.second @ first).square()  # [half, 4 k2, F * B]
        power = squared.reshape(self.half, 2, 2 * self.k2, -1).sum(1)  # [half, (row, mirror) x k2, F * B]
        mel = self.mel @ power.reshape(-1, frames * batch)
        return mel.reshape(-1, frames, batch).permute(2, 0, 1)


class LogMelStage:
    """The frozen stage of a spectral front end, as the data side's caches use one (see
    ``ser.data.cache.FrozenStage``): computed with the front end's own modules, on its device,
    so cached features cannot drift from what the model computes itself."""

    description = "log-mel features"
    batch_size = 64

    def __init__(self, frontend: FeatureFrontend):
        self.frontend = frontend
        self.width = frontend.n_mels

    @property
    def device(self) -> torch.device:
        return next(self.frontend.buffers()).device

    def to(self, device: torch.device) -> LogMelStage:
        self.frontend.to(device)
        return self

    def estimated_bytes(self, samples: int, clips: int) -> int:
        return 4 * self.width * int(self.frame_lengths(torch.tensor(samples)))

    def cache_key(self) -> dict:
        """What the log-mel depends on: the key of a cache of it."""
        f, mel = self.frontend, self.frontend.mel_scale
        return dict(sample_rate=mel.sample_rate, n_fft=f.n_fft, hop_length=f.hop_length,
                    n_mels=f.n_mels, f_min=mel.f_min, f_max=mel.f_max, floor=LOG_FLOOR)

    def frame_lengths(self, samples: torch.Tensor) -> torch.Tensor:
        return self.frontend.frame_lengths(samples)

    def compute(self, waves: torch.Tensor, lengths: torch.Tensor):
        """waves[B, T], lengths[B] -> log-mel[B, n_mels, frames], frame_lengths[B]"""
        return self.frontend.log_mel(waves, lengths)
