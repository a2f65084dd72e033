"""The one LightningDataModule every corpus reuses.

corpus folder --parser--> clips (path, speaker, emotion) --split--> train/val/test
             --cache--> mono float32 at ``sample_rate``
             [--feature cache--> log-mel of each clip, computed once with the model's front end]
             --loader--> (inputs[B, ..., T], lengths[B], labels[B])

On a GPU the cache the loaders read usually fits in the GPU's memory many times over (CREMA-D's
log-mel: 0.3 GB). It is then copied there once (``cache_on_device``) and the loaders yield only
each clip's rows (:class:`Spans`); the batch is gathered on the device after the transfer. A
GPU step is bound by its host thread, and taking a batch from a worker costs that thread time
(unpickling, a shared-memory mapping per tensor: 1-2 ms a batch on the 2-core CPU) that a
gather of a few kernels does not.

Inputs are waveforms ``[B, samples]``, or with a spectral front end and
``precompute_features`` (the default) log-mel ``[B, n_mels, frames]``: per step that saves the
STFT and mel filterbank of every clip (measured: ~15 ms of a 32-clip CPU step) and loading
reads a quarter of the bytes.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSamplerWrapper
from torch.utils.data import DataLoader, Dataset, Sampler

from ser.data.cache import ClipCache, FeatureCache, ResidentRows, WaveformCache
from ser.data.corpora import Clip, Corpus
from ser.data.emotions import check_emotions
from ser.data.splits import SPLITS, assign_splits

log = logging.getLogger(__name__)
RESIDENT_SHARE = 0.25  # cache_on_device=auto: at most this share of the GPU's free memory


class ClipDataset(Dataset):
    """Clips of one split, read from a cache (only the cropped part, if cropped): waveforms
    ``[samples]`` or log-mel ``[n_mels, frames]``; ``max_len`` counts samples or frames."""

    def __init__(self, cache: ClipCache, paths: list[str], labels: list[int], max_len: int | None, crop: str):
        self.cache, self.paths, self.labels = cache, paths, labels
        self.max_len, self.crop = max_len, crop

    def __len__(self):
        return len(self.paths)

    def lengths(self) -> list[int]:
        n = [self.cache.length(p) for p in self.paths]
        return [min(x, self.max_len) for x in n] if self._crops() else n

    def _crops(self) -> bool:
        return self.max_len is not None and self.crop != "none"

    def span(self, i) -> tuple[int, int]:
        """(first row, row count) of item ``i`` within its clip: the crop, drawn here."""
        length = self.cache.length(self.paths[i])
        if self._crops() and (excess := length - self.max_len) > 0:
            start = int(torch.randint(excess + 1, ())) if self.crop == "random" else excess // 2
            return start, self.max_len
        return 0, length

    def __getitem__(self, i):
        start, count = self.span(i)
        rows = torch.from_numpy(self.cache.read(self.paths[i], start, count))
        return rows.movedim(0, -1), self.labels[i]  # time last (a view; the batch is one copy)


class SpanDataset(ClipDataset):
    """The same clips as rows of a cache held on the device: items are (first row in the
    cache, row count, label), gathered into a batch after the transfer."""

    def __getitem__(self, i):
        start, count = self.span(i)
        return self.cache.offsets[self.paths[i]][0] + start, count, self.labels[i]


class Spans(NamedTuple):
    """A batch as row spans of a device-resident cache (see :class:`ResidentRows`)."""

    starts: torch.Tensor  # [B] first row of each clip in the cache (after any crop)
    lengths: torch.Tensor  # [B] rows of each clip
    labels: torch.Tensor  # [B]
    longest: int  # max(lengths), known on the host: the gather needs no device sync


def stack_spans(items) -> Spans:
    starts, lengths, labels = (torch.tensor(column) for column in zip(*items))
    return Spans(starts, lengths, labels, int(lengths.max()))


def pad_batch(items):
    """Zero-pad a list of (clip, label) along time, the last axis, to the longest clip; the
    true lengths travel along."""
    clips, labels = zip(*items)
    lengths = torch.tensor([clip.shape[-1] for clip in clips])
    batch = torch.zeros(len(clips), *clips[0].shape[:-1], int(lengths.max()))
    for row, clip in zip(batch, clips):
        row[..., : clip.shape[-1]] = clip
    return batch, lengths, torch.tensor(labels)


class BucketSampler(Sampler):
    """Shuffled batches of similar length: cuts padding (and compute) without a fixed order.

    Indices are shuffled, cut into pools of ``pool_batches`` batches, sorted by length within
    each pool, batched, and the batches shuffled again. Yields indices, so Lightning can still
    wrap it for distributed training.
    """

    def __init__(self, lengths, batch_size: int, seed: int, pool_batches: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.pool = batch_size, seed, pool_batches * batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.lengths)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.pool):
            pool = order[start : start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        for b in rng.permutation(len(batches)):
            yield from batches[b].tolist()


class FixedOrder(Sampler):
    """Yields a precomputed order of indices."""

    def __init__(self, order):
        self.order = [int(i) for i in order]

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        return iter(self.order)


class SERDataModule(L.LightningDataModule):
    def __init__(
        self,
        corpus: Corpus,
        root: str | None,
        emotions: list[str],
        sample_rate: int = 16000,
        split: str = "speaker",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        fold: int = 0,
        num_folds: int = 5,
        seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | str = "auto",
        pin_memory: bool = True,
        persistent_workers: bool = True,
        bucket_by_length: bool = True,
        max_seconds: float | None = None,
        eval_crop: str = "center",
        min_samples: int = 2048,
        cache_dir: str = ".cache",
        precompute_features: bool = True,
        cache_on_device: bool | str = "auto",
    ):
        super().__init__()
        self.corpus, self.root = corpus, root
        self.classes = check_emotions(emotions)
        self.sample_rate, self.split, self.seed = sample_rate, split, seed
        self.split_args = dict(val_fraction=val_fraction, test_fraction=test_fraction,
                               seed=seed, fold=fold, num_folds=num_folds)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        if not (num_workers == "auto" or (isinstance(num_workers, int) and num_workers >= 0)):
            raise ValueError(f"data.num_workers must be auto or a count >= 0, not {num_workers!r}")
        self.num_workers, self.pin_memory, self.persistent_workers = num_workers, pin_memory, persistent_workers
        self.bucket_by_length = bucket_by_length
        self.max_samples = int(max_seconds * sample_rate) if max_seconds else None
        if eval_crop not in ("center", "none"):
            raise ValueError(f"data.eval_crop must be center or none, not {eval_crop!r}")
        self.eval_crop = eval_crop
        self.min_samples, self.cache_dir = min_samples, cache_dir
        self.precompute_features = precompute_features
        if cache_on_device not in ("auto", True, False):
            raise ValueError(f"data.cache_on_device must be auto, true or false, not {cache_on_device!r}")
        self.cache_on_device = cache_on_device
        self.resident: ResidentRows | None = None  # the rows on the device, once the first batch arrives
        self.clips: list[Clip] = []
        self.assignment: list[str] = []
        self.datasets: dict[str, ClipDataset] = {}

    # -- preparation -----------------------------------------------------------------------
    def prepare_data(self):
        """Runs once per machine: generate (synthetic) data and build the caches."""
        self.corpus.prepare(self.root)
        clips = self._scan()
        waveforms = WaveformCache.open([c.path for c in clips], self.sample_rate, self.cache_dir)
        if (frontend := self.feature_frontend()) is not None:
            FeatureCache.open(waveforms, frontend, self.cache_dir)

    def setup(self, stage: str | None = None):
        if self.datasets:
            return
        clips = self._scan()
        waveforms = WaveformCache.open([c.path for c in clips], self.sample_rate, self.cache_dir)
        self.clips = self._usable(clips, waveforms)
        self.assignment = assign_splits([c.speaker for c in self.clips], [c.emotion for c in self.clips],
                                        self.split, **self.split_args)
        cache, max_len = waveforms, self.max_samples
        if (frontend := self.feature_frontend()) is not None:
            cache = FeatureCache.open(waveforms, frontend, self.cache_dir)
            max_len = max_len and int(frontend.frame_lengths(torch.tensor(max_len)))
        dataset = SpanDataset if self._holds_cache_on_device(cache) else ClipDataset
        for name in SPLITS:
            members = [c for c, s in zip(self.clips, self.assignment) if s == name]
            crop = "random" if name == "train" else self.eval_crop
            self.datasets[name] = dataset(cache, [c.path for c in members],
                                          [self.classes.index(c.emotion) for c in members], max_len, crop)
        self._log_summary()

    def _holds_cache_on_device(self, cache: ClipCache) -> bool:
        """``cache_on_device``, with ``auto`` resolved: on a CUDA GPU when the cache takes at
        most ``RESIDENT_SHARE`` of its free memory."""
        if self.cache_on_device != "auto":
            return self.cache_on_device
        if self.trainer is None or not isinstance(self.trainer.accelerator, CUDAAccelerator):
            return False
        free, _ = torch.cuda.mem_get_info()
        return cache.nbytes <= RESIDENT_SHARE * free

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Spans on the device -> (inputs, lengths, labels), gathered from the resident cache."""
        if not isinstance(batch, Spans):
            return batch
        if self.resident is None or self.resident.rows.device != batch.starts.device:
            self.resident = ResidentRows.load(self.datasets["train"].cache, batch.starts.device)
        return self.resident.gather(batch.starts, batch.lengths, batch.longest), batch.lengths, batch.labels

    def feature_frontend(self):
        """The model's front end when its log-mel can be computed once per clip here: with
        ``precompute_features``, a spectral front end and a trainer that holds the model. The
        model's own module, so the features cannot drift from what it computes itself."""
        model = self.trainer.lightning_module if self.precompute_features and self.trainer else None
        frontend = getattr(model, "frontend", None)
        return frontend if getattr(frontend, "kind", None) in ("logmel", "mfcc") else None

    def _scan(self) -> list[Clip]:
        clips, skipped = self.corpus.scan(self.root)
        if skipped:
            _warn_skipped("file names not in the corpus naming scheme", skipped)
        return [c for c in clips if c.emotion in self.classes]

    def _usable(self, clips: list[Clip], cache: WaveformCache) -> list[Clip]:
        """Drop undecodable and too-short clips, listing them by name."""
        bad = [(c.path, cache.failed[c.path]) for c in clips if c.path in cache.failed]
        short = [(c.path, f"{cache.length(c.path)} samples, shorter than one analysis window "
                          f"({self.min_samples})")
                 for c in clips if c.path in cache and cache.length(c.path) < self.min_samples]
        if bad:
            _warn_skipped("unreadable audio", bad)
        if short:
            _warn_skipped("clips too short", short)
        dropped = {p for p, _ in bad + short}
        return [c for c in clips if c.path not in dropped]

    def _log_summary(self):
        counts = {name: len(ds) for name, ds in self.datasets.items()}
        speakers = {name: len({c.speaker for c, s in zip(self.clips, self.assignment) if s == name})
                    for name in SPLITS}
        train = self.datasets["train"]
        inputs = "log-mel, computed once" if isinstance(train.cache, FeatureCache) else "waveforms"
        where = "held on the device, batches gathered there" if isinstance(train, SpanDataset) else "read by the loaders"
        log.info("Split %s: %s clips, %s speakers; inputs: %s, %s", self.split, counts, speakers, inputs, where)
        for name, ds in self.datasets.items():
            if len(ds) == 0:
                raise ValueError(f"the {name} split is empty; check data.root and data.emotions")

    # -- loaders ---------------------------------------------------------------------------
    def train_dataloader(self):
        ds = self.datasets["train"]
        if self.bucket_by_length:
            sampler = BucketSampler(ds.lengths(), self.batch_size, self.seed)
            return DataLoader(ds, self.batch_size, sampler=sampler, drop_last=False, **self.loader_args(ds))
        return DataLoader(ds, self.batch_size, shuffle=True, **self.loader_args(ds))

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")

    def _eval_loader(self, name):
        ds = self.datasets[name]
        # Sorted by length: least padding. Models are padding-invariant, so order is harmless.
        sampler = FixedOrder(np.argsort(ds.lengths(), kind="stable") if self.bucket_by_length
                             else np.arange(len(ds)))
        if self.trainer is not None and self.trainer.world_size > 1:
            # Each clip scored exactly once across processes (Lightning's default sampler pads
            # shards with repeats, which would count some test clips twice).
            sampler = UnrepeatedDistributedSamplerWrapper(sampler, shuffle=False)
        return DataLoader(ds, self.eval_batch_size, sampler=sampler, **self.loader_args(ds))

    def loader_args(self, dataset: Dataset | None = None) -> dict:
        if isinstance(dataset, SpanDataset):  # a batch is three small index tensors: no workers
            return dict(collate_fn=stack_spans, num_workers=0)
        workers = self.worker_count()
        return dict(collate_fn=pad_batch, num_workers=workers, pin_memory=self.pin_memory and torch.cuda.is_available(),
                    persistent_workers=self.persistent_workers and workers > 0)

    def worker_count(self) -> int:
        """``num_workers``, with ``auto`` resolved for the trainer's accelerator.

        On CPU the network's own threads already use every core and a batch is read from the
        waveform cache in about a millisecond, so workers only compete with the model
        (measured: 0 workers trains ~8% faster than 2 on a 2-core machine). On an accelerator
        the CPU is idle while the device computes, and workers overlap loading with it.
        """
        if self.num_workers != "auto":
            return self.num_workers
        trainer = self.trainer
        if trainer is None or isinstance(trainer.accelerator, CPUAccelerator):
            return 0
        cores_per_process = (os.cpu_count() or 2) // max(1, trainer.world_size)
        return max(1, min(4, cores_per_process - 1))

    # -- records ---------------------------------------------------------------------------
    def split_counts(self) -> dict[str, int]:
        return {f"n_{name}": len(self.datasets[name]) for name in SPLITS}

    def write_split_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["path", "speaker", "emotion", "split"])
            for clip, split in zip(self.clips, self.assignment):
                writer.writerow([clip.path, clip.speaker, clip.emotion, split])


def _warn_skipped(what: str, skipped: list[tuple[str, str]]) -> None:
    reasons = Counter(reason for _, reason in skipped)
    listing = "\n".join(f"  {path}: {reason}" for path, reason in skipped[:50])
    more = f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
    log.warning("Skipped %d file(s), %s (%s):\n%s%s", len(skipped), what,
                ", ".join(f"{n}x {r}" for r, n in reasons.most_common(3)), listing, more)
