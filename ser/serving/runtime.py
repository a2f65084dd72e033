"""What ``ser-predict`` scores with: a checkpoint on torch, or an exported model on onnxruntime.

Both answer the same few questions (:class:`Model`), so ``ser.serving.predict`` reads files, cuts windows,
batches them and handles speakers once, for both. This module imports neither backend at the top:
``ser-predict --model`` runs where only numpy, soundfile, soxr and onnxruntime are installed
(``pip install "ser[predict]"``), and it owns ``ser.json``, the description an export carries
(``ser-export`` writes it with :func:`write_manifest`; :class:`ExportedModel` reads it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from ser.errors import UserError
from ser.frontends.normalize import SpeakerStatistics
from ser.readout import Readout

MANIFEST = "ser.json"
MANIFEST_FORMAT = 2  # bump when what ser.json or the graphs' inputs mean changes (2: per-speaker log-mel models read features.onnx's output)
MODEL_GRAPH, STAGE_GRAPH = "model.onnx", "features.onnx"
INT8_GRAPH = "model.int8.onnx"  # ser-export --quantize int8: the network with int8 weights, beside the float one


class Model(Protocol):
    sample_rate: int  # every file is resampled to it
    min_samples: int  # the shortest window the front end can analyse
    per_speaker: bool  # standardises by a speaker's statistics (features.normalize=speaker)
    reads: str  # "audio": readout() takes waveforms; "stage": the frozen stage's outputs
    pooled: SpeakerStatistics | None  # the training speakers' statistics (None: not known)
    reading: Readout  # what the values of a readout are

    def stage(self, waves: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """waves[B, T], lengths[B] -> each clip's frozen-stage output ``[width, frames]``
        (log-mel, functionals), unnormalised: what a speaker's statistics are gathered over."""

    def readout(self, inputs: np.ndarray, lengths: np.ndarray,
                statistics: SpeakerStatistics | None) -> np.ndarray:
        """A padded batch (waveforms ``[B, T]`` or stage outputs ``[B, width, frames]``) -> ``[B, values]``."""


class CheckpointModel:
    """A checkpoint written by ``train.py``, on torch (the training stack)."""

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> CheckpointModel:
        import torch

        from ser.module import SERModule

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(SERModule.from_checkpoint(path).to(device))

    def __init__(self, module):
        """``module``: a trained ``ser.module.SERModule`` (scored on its device, in eval mode)."""
        import torch

        self._torch = torch
        self.module = module.eval()
        self.device = next(module.parameters()).device
        frontend = self.module.frontend
        self.sample_rate, self.min_samples = frontend.sample_rate, frontend.min_samples
        self.per_speaker = frontend.speaker_normalizer() is not None
        # A per-speaker model is handed its stage outputs, which the call computes anyway for the
        # speaker's statistics, and standardises them by those statistics itself.
        self.reads = "stage" if self.per_speaker else "audio"
        known = self.per_speaker and frontend.pooled.known
        self.pooled = SpeakerStatistics(*(v.cpu().numpy() for v in (frontend.pooled.mean, frontend.pooled.std))) \
            if known else None
        self.reading = self.module.task.reading()

    def stage(self, waves, lengths):
        torch = self._torch
        stage = self.module.frontend.frozen_stage()
        with torch.no_grad():
            computed, frames = stage.compute(torch.from_numpy(waves).to(stage.device),
                                             torch.from_numpy(lengths).to(stage.device))
        return [clip[:, :n].float().cpu().numpy() for clip, n in zip(computed, frames.tolist())]

    def readout(self, inputs, lengths, statistics):
        torch = self._torch
        with torch.no_grad():
            outputs = self.module(torch.from_numpy(inputs).to(self.device), torch.from_numpy(lengths).to(self.device),
                                  statistics)
            return self.module.task.readout(outputs).float().cpu().numpy()


class ExportedModel:
    """A folder written by ``ser-export``, on onnxruntime: no torch, Lightning or Hydra."""

    def __init__(self, folder: str | Path, threads: int | None = None, int8: bool = False):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError('an exported model runs on onnxruntime, which is not installed: '
                            'pip install "ser[predict]"') from None
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        m = self.manifest
        self.sample_rate, self.min_samples = m["sample_rate"], m["min_samples"]
        self.max_window_seconds = m.get("max_window_seconds")  # a Whisper graph: one 30 s window per clip
        self.narrowest = m["narrowest"]  # each graph's (by file stem) narrowest padded batch, along its time axis
        self.reading = Readout.from_json(m["reading"])
        speaker = m["per_speaker"]
        self.per_speaker = speaker is not None
        self.pooled = SpeakerStatistics(np.array(speaker["pooled"]["mean"]), np.array(speaker["pooled"]["std"])) \
            if speaker and speaker["pooled"] else None
        self.reads = m["inputs"]
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its optimiser's notes are not the user's business
        # Its threads would otherwise spin-wait after every call: a per-speaker model's two
        # sessions (features, network) then take the cores from each other, and so do the file
        # decoding threads (ser-predict's predict(), CNN-GRU on 2 cores: 305 clips/s spinning,
        # 391 not; benchmarks/README.md, "export").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        graph = INT8_GRAPH if int8 else MODEL_GRAPH
        if not (self.folder / graph).is_file():
            raise UserError(f"{self.folder} holds no int8 graph: export it with ser-export --quantize int8")
        self.session = ort.InferenceSession(str(self.folder / graph), options, providers=providers)
        self.stage_session = ort.InferenceSession(str(self.folder / STAGE_GRAPH), options, providers=providers) \
            if m["graphs"].get("stage") else None
        self.functionals = None
        if m["frontend"]["kind"] == "egemaps":  # openSMILE runs beside the graph: it cannot live in one
            try:
                import opensmile  # noqa: F401
            except ImportError:
                raise UserError('this model reads openSMILE functionals: pip install "ser[predict,egemaps]"') from None
            from ser.frontends.smile import Functionals

            self.functionals = Functionals(m["frontend"]["feature_set"], self.sample_rate)

    def _wide_enough(self, batch: np.ndarray, graph: str) -> np.ndarray:
        """Zero-pad a batch along time to the narrowest ``graph`` was exported for (padding
        changes no clip's result: every model is padding-invariant, tested)."""
        short = (self.narrowest[graph] or 0) - batch.shape[-1]
        return np.pad(batch, [(0, 0)] * (batch.ndim - 1) + [(0, short)]) if short > 0 else batch

    def stage(self, waves, lengths):
        if self.functionals is not None:
            rows = self.functionals.of([wave[:n] for wave, n in zip(waves, lengths)])
            return list(rows[..., None])
        features, frames = self.stage_session.run(None, {"audio": self._wide_enough(waves, "features"), "lengths": lengths})
        return [clip[:, :n] for clip, n in zip(features, frames)]

    def readout(self, inputs, lengths, statistics):
        name = "features" if self.reads == "stage" else "audio"
        feed = {name: self._wide_enough(inputs, "model"), "lengths": lengths}
        if self.per_speaker:
            feed |= {"speaker_mean": np.asarray(statistics.mean, dtype=np.float64),
                     "speaker_std": np.asarray(statistics.std, dtype=np.float64)}
        return self.session.run(None, feed)[0]


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps({"format": MANIFEST_FORMAT, **manifest}, indent=1) + "\n")


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.is_file():
        raise UserError(f"{str(folder)!r} is not an exported model (no {MANIFEST}); ser-export writes one")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path} is format {manifest.get('format')}; this ser reads format {MANIFEST_FORMAT}: "
                        "export the model again with this version's ser-export")
    return manifest
