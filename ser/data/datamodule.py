"""The one LightningDataModule every corpus reuses.

corpus folder --parser--> clips (path, speaker, emotion, attributes) --split--> train/val/test
             --cache--> mono float32 at the front end's sample rate
             [--feature cache--> the front end's frozen stage (log-mel) of each clip, once]
             --loader--> (inputs[B, ..., T], lengths[B], targets[B, ...]: what the task says)

The model's front end is handed in (``frontend``) by the composition root; nothing here looks
for a model.

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
from typing import Protocol

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSamplerWrapper
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, WeightedRandomSampler

from ser.data.cache import (
    ClipCache,
    FeatureCache,
    FrozenStage,
    ResidentRows,
    Shares,
    SpeakerNormalised,
    WaveformCache,
)
from ser.data.corpora import Clip, Corpus
from ser.data.loading import (
    BucketSampler,
    ClipDataset,
    FixedOrder,
    SpanDataset,
    Spans,
    SpeakerStatisticsDataset,
    TrainingBatches,
    pad_batch,
    stack_spans,
)
from ser.data.options import check_data_options
from ser.data.splits import SPLITS, assign_splits
from ser.errors import ConfigError
from ser.frontends.normalize import SpeakerNormalizer, SpeakerStatistics

log = logging.getLogger(__name__)
RESIDENT_SHARE = 0.25  # cache_on_device=auto: at most this share of the GPU's free memory


class FrontEnd(Protocol):
    """What the data side takes from the model's front end, which the composition root hands
    over (``ser.frontends.Frontend``): the rate to resample to, the shortest clip it can
    analyse, the frozen stage to compute once per clip (None: feed waveforms), and how to
    normalise that stage's output per speaker (None: not per speaker)."""

    sample_rate: int
    min_samples: int

    def frozen_stage(self) -> FrozenStage | None: ...

    def speaker_normalizer(self) -> SpeakerNormalizer | None: ...


class TargetsOf(Protocol):
    """What the data side takes from the model's task, which the composition root hands over
    (``ser.tasks``): which clips it can learn from and each clip's target."""

    needs_emotion: bool  # only clips with a category of data.emotions
    needs_attributes: bool  # only clips with attribute ratings

    def target(self, class_index: int | None, attributes: tuple[float, float, float] | None): ...


class SERDataModule(L.LightningDataModule):
    def __init__(
        self,
        corpus: Corpus,
        root: str | None,
        emotions: list[str],
        frontend: FrontEnd | None = None,
        task: TargetsOf | None = None,
        split: str = "speaker",
        split_file: str | None = None,
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
        balanced_sampling: bool = False,
        max_seconds: float | None = None,
        eval_crop: str = "center",
        cache_dir: str = ".cache",
        precompute_features: bool = True,
        cache_on_device: bool | str = "auto",
        feature_cache: str = "float32",
        train_on_waveforms: bool = False,
    ):
        """``frontend``: the model's front end (None: raw 16 kHz waveforms, every clip usable);
        ``task``: the model's task (None: categories of ``emotions``, as class indices);
        ``train_on_waveforms``: the training split is served as waveforms even where the front
        end's frozen stage is cached (the model changes them before its front end:
        ``augment.channel``); validation and test read the cache as ever. Clips normalised per
        speaker then come with their speaker's statistics (:class:`SpeakerStatisticsDataset`)."""
        super().__init__()
        check_data_options(emotions=emotions, split=split, val_fraction=val_fraction,
                           test_fraction=test_fraction, fold=fold, num_folds=num_folds,
                           batch_size=batch_size, eval_batch_size=eval_batch_size,
                           num_workers=num_workers, max_seconds=max_seconds, eval_crop=eval_crop,
                           cache_on_device=cache_on_device, split_file=split_file,
                           feature_cache=feature_cache)
        self.corpus, self.root = corpus, root
        self.classes = list(emotions)
        self.task = task
        self.sample_rate = frontend.sample_rate if frontend is not None else 16000
        self.min_samples = frontend.min_samples if frontend is not None else 1
        stage = frontend.frozen_stage() if frontend is not None else None
        self.frozen_stage: FrozenStage | None = stage if precompute_features else None
        self.normalizer = frontend.speaker_normalizer() if frontend is not None else None
        self.by_speaker = self.normalizer is not None
        if self.by_speaker and self.frozen_stage is None:
            raise ConfigError("features.normalize=speaker normalises cached features per speaker: it needs "
                              "a spectral front end (features=logmel or mfcc) and data.precompute_features=true.")
        self.split, self.seed = split, seed
        self.split_args = dict(val_fraction=val_fraction, test_fraction=test_fraction, split_file=split_file,
                               seed=seed, fold=fold, num_folds=num_folds)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.pin_memory, self.persistent_workers = num_workers, pin_memory, persistent_workers
        self.bucket_by_length, self.balanced_sampling = bucket_by_length, balanced_sampling
        self.max_samples = int(max_seconds * self.sample_rate) if max_seconds else None
        self.eval_crop, self.cache_dir = eval_crop, cache_dir
        corpus.check_available(root)
        self.cache_on_device = cache_on_device
        self.feature_cache = feature_cache
        self.train_on_waveforms = train_on_waveforms
        self.normalised: SpeakerNormalised | None = None  # normalize=speaker: the cache, with each speaker's moments
        self.resident: ResidentRows | None = None  # the rows on the device, once the first batch arrives
        self.clips: list[Clip] = []
        self.assignment: list[str] = []
        self.datasets: dict[str, ClipDataset] = {}

    # -- preparation -----------------------------------------------------------------------
    def prepare_data(self):
        """Runs once per machine: generate (synthetic) data and build the caches (in a job of
        several processes, the frozen stage's cache is built in :meth:`setup`, a share by each)."""
        self.corpus.prepare(self.root)
        self._skip_costly_stage_in_a_quick_run()
        waveforms = self._open_waveforms(self._scan())
        if self._shares() is None:
            self._open_features(waveforms)

    def _skip_costly_stage_in_a_quick_run(self) -> None:
        """A run that touches a few batches only (fast_dev_run, limit_*_batches < all) does not
        compute a costly frozen stage (a pretrained encoder) over the whole corpus first: the
        model computes it per batch for the clips it touches, the same states (every front end
        is padding-invariant), and the full cache is left for a full run to build."""
        stage, trainer = self.frozen_stage, self.trainer
        if stage is None or not getattr(stage, "costly", False) or self.by_speaker or trainer is None:
            return
        limits = (trainer.limit_train_batches, trainer.limit_val_batches, trainer.limit_test_batches)
        if trainer.fast_dev_run or any(isinstance(n, int) or n < 1.0 for n in limits):
            log.info("A quick run (fast_dev_run or limit_*_batches): %s computed per batch for the clips it "
                     "touches, not cached for the whole corpus first", stage.description)
            self.frozen_stage = None

    def setup(self, stage: str | None = None):
        if self.datasets:
            return
        self._skip_costly_stage_in_a_quick_run()
        clips = self._scan()
        waveforms = self._open_waveforms(clips)
        cache = self._open_features(waveforms)
        self.clips = self._usable(clips, waveforms)
        self.assignment = self._assign(self.clips)
        if self.by_speaker:
            # A clip of an unknown speaker (None) is standardised with the training speakers'
            # pooled statistics, as ser-predict standardises a lone file.
            speaker_of = {c.path: c.speaker if c.speaker_known else None for c in self.clips}
            training = sorted({c.speaker for c, s in zip(self.clips, self.assignment) if s == "train" and c.speaker_known})
            cache = self.normalised = SpeakerNormalised.open(cache, speaker_of, self.normalizer, self.cache_dir,
                                                             pooled_from=training)
        max_len = self.max_samples
        if self.frozen_stage is not None and max_len:
            max_len = int(self.frozen_stage.frame_lengths(torch.tensor(max_len)))
        dataset = SpanDataset if self._holds_cache_on_device(cache) else ClipDataset
        for name in SPLITS:
            members = [c for c, s in zip(self.clips, self.assignment) if s == name]
            if name == "train" and self._waveforms_for_training():
                self.datasets[name] = self._waveform_training_set(waveforms, members)
                continue
            crop = "random" if name == "train" else self.eval_crop
            self.datasets[name] = dataset(cache, [c.path for c in members], [self._target(c) for c in members],
                                          max_len, crop)
        self._log_summary()

    def _waveforms_for_training(self) -> bool:
        """Whether training reads waveforms where the other splits read the frozen stage's cache."""
        return self.train_on_waveforms and self.frozen_stage is not None

    def _waveform_training_set(self, waveforms: WaveformCache, members: list[Clip]) -> ClipDataset:
        """The training clips as waveforms (cropped at random to ``max_seconds``); normalised per
        speaker, each with its speaker's statistics from the cached features (pooled over the
        training speakers for a clip of an unknown speaker), as the cache applies them."""
        paths, targets = [c.path for c in members], [self._target(c) for c in members]
        if not self.by_speaker:
            return ClipDataset(waveforms, paths, targets, self.max_samples, "random")
        pooled, _ = self.training_statistics()
        by_speaker = {name: self.normalizer.statistics(total) for name, total in self.normalised.speaker_moments.items()}
        statistics = [by_speaker[c.speaker] if c.speaker_known else pooled for c in members]
        return SpeakerStatisticsDataset(waveforms, paths, targets, self.max_samples, "random", statistics)

    def _assign(self, clips: list[Clip]) -> list[str]:
        if self.split == "protocol":
            return self.corpus.protocol_split(clips, fold=self.split_args["fold"], seed=self.seed,
                                              val_fraction=self.split_args["val_fraction"])
        return assign_splits([c.speaker for c in clips], [self._category(c) for c in clips], self.split,
                             paths=[c.path for c in clips], **self.split_args)

    def _category(self, clip: Clip) -> str | None:
        """The clip's emotion if it is one of ``classes`` (else None: kept for its attributes)."""
        return clip.emotion if clip.emotion in self.classes else None

    def _class_index(self, clip: Clip) -> int | None:
        return self.classes.index(clip.emotion) if clip.emotion in self.classes else None

    def _target(self, clip: Clip):
        index = self._class_index(clip)
        return index if self.task is None else self.task.target(index, clip.attributes)

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
            cache = next(ds.cache for ds in self.datasets.values() if isinstance(ds, SpanDataset))
            self.resident = ResidentRows.load(cache, batch.starts.device)
        return self.resident.gather(batch.starts, batch.lengths, batch.longest), batch.lengths, batch.labels

    def _open_waveforms(self, clips: list[Clip]) -> WaveformCache:
        return WaveformCache.open([c.path for c in clips], self.sample_rate, self.cache_dir)

    def _open_features(self, waveforms: WaveformCache) -> ClipCache:
        """The cache the loaders read: the frozen stage's (None: the waveforms), built first
        where missing, by every process of the job in shares where there are several."""
        if self.frozen_stage is None:
            return waveforms
        # Where the model will train: a frozen encoder computes its states on the GPU.
        device = self.trainer.strategy.root_device if self.trainer is not None else None
        return FeatureCache.open(waveforms, self.frozen_stage, self.cache_dir, device, self.feature_cache,
                                 self._shares())

    def _shares(self) -> Shares | None:
        """This process's share of a cache build when the job has several processes (DDP)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return None
        return Shares(trainer.global_rank, trainer.world_size, trainer.strategy.barrier)

    def _scan(self) -> list[Clip]:
        """The clips the task can learn from: with a category of ``classes`` and/or attribute
        ratings, as it needs. None left is one paragraph, before anything is decoded."""
        clips, skipped = self.corpus.scan(self.root)
        if skipped:
            _warn_skipped("files without a usable label", skipped)
        needs_emotion = self.task is None or self.task.needs_emotion
        needs_attributes = self.task is not None and self.task.needs_attributes
        usable = [c for c in clips if (not needs_emotion or c.emotion in self.classes)
                  and (not needs_attributes or c.attributes is not None)]
        if not usable:
            wanted = " and ".join(filter(None, [f"a category of data.emotions={self.classes}" if needs_emotion else "",
                                                "attribute ratings" if needs_attributes else ""]))
            raise ConfigError(f"none of the {len(clips)} clips found under data.root={self.root} "
                              f"({self.corpus.name}) has {wanted}, which this task needs"
                              + (f"; {len(skipped)} file(s) were skipped, listed above" if skipped else "") + ".")
        return usable

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
        inputs = "waveforms"
        if self.frozen_stage is not None:
            inputs = f"{self.frozen_stage.description}, computed once"
            inputs += ", normalised per speaker" if self.by_speaker else ""
        where = "held on the device, batches gathered there" if isinstance(self.datasets["test"], SpanDataset) else "read by the loaders"
        log.info("Split %s: %s clips, %s speakers; inputs: %s, %s", self.split, counts, speakers, inputs, where)
        if self._waveforms_for_training():
            log.info("Training clips are read as waveforms, changed by the model's augmentation, and their %s "
                     "computed every step on the model's device (validation and test read the cache)",
                     self.frozen_stage.description)
        if train.max_len is not None:
            longer = sum(ds.cache.length(p) > ds.max_len for ds in self.datasets.values() for p in ds.paths)
            log.info("%d clips are longer than data.max_seconds=%g s and cropped (at random in training, "
                     "data.eval_crop=%s at evaluation)", longer, self.max_samples / self.sample_rate, self.eval_crop)
        for name, ds in self.datasets.items():
            if len(ds) == 0:
                raise ConfigError(f"the {name} split is empty; check data.root and data.emotions")
        count, _ = self._processes()
        if len(train) <= count:
            raise ConfigError(f"the train split holds {len(train)} clip(s) for {count} process(es): each process "
                              "needs at least two a step, since a batch of one clip cannot train a batch "
                              "normalisation; add speakers or clips to training, or use fewer devices.")

    # -- loaders ---------------------------------------------------------------------------
    def class_counts(self, name: str) -> list[int]:
        """Clips of each class (in ``classes`` order) in a split."""
        return np.bincount(self._class_indices(name), minlength=len(self.classes)).tolist()

    def _class_indices(self, name: str) -> np.ndarray:
        """The class of each clip of a split (in dataset order) that has one of ``classes``."""
        return np.asarray([i for c in self._members(name) if (i := self._class_index(c)) is not None], dtype=np.int64)

    def _members(self, name: str) -> list[Clip]:
        """The clips a split's dataset serves, in its order."""
        clip_of = {c.path: c for c in self.clips}
        return [clip_of[path] for path in self.datasets[name].paths]

    def train_dataloader(self):
        ds = self.datasets["train"]
        batches = TrainingBatches(self._training_order(ds), self.batch_size)
        if batches.joins_last_clip:
            log.info("%d training clips (this process's share) in batches of %d: the last clip joins the batch "
                     "before it (a batch of one cannot train a batch normalisation)", len(batches.sampler),
                     self.batch_size)
        return DataLoader(ds, batch_sampler=batches, **self.loader_args(ds))

    def _training_order(self, ds: ClipDataset) -> Sampler:
        """The order this process visits its share of the training clips in, drawn anew each
        epoch (Lightning calls ``set_epoch``). Every order is seeded by ``seed`` alone, so the
        processes of a job agree on it and each takes every ``world_size``-th clip of it
        (:meth:`_shard`); Lightning's own sharding is off (``trainer.use_distributed_sampler``)
        because it would replace these orders with a plain shuffle."""
        if self.balanced_sampling:
            # Each class drawn equally often (with replacement): an imbalanced corpus's rare
            # emotions are seen as much as its common ones. No length buckets then.
            counts = np.asarray(self.class_counts("train"), dtype=np.float64).clip(min=1)
            members = self._members("train")
            # A clip without a category (kept for its attributes) is drawn as often as the commonest class's.
            weights = np.asarray([1.0 / counts[i] if (i := self._class_index(c)) is not None else 1.0 / counts.max()
                                  for c in members])
            generator = torch.Generator().manual_seed(self.seed)
            return self._shard(WeightedRandomSampler(weights.tolist(), len(ds), replacement=True, generator=generator))
        if self.bucket_by_length:
            return self._shard(BucketSampler(ds.lengths(), self.batch_size, self.seed))
        count, rank = self._processes()
        return DistributedSampler(ds, num_replicas=count, rank=rank, shuffle=True, seed=self.seed)

    def _shard(self, order: Sampler) -> Sampler:
        """This process's share of ``order``: every ``world_size``-th index (the last shares
        padded with repeats to equal length, so that every process takes as many steps)."""
        count, rank = self._processes()
        return order if count == 1 else DistributedSamplerWrapper(order, num_replicas=count, rank=rank, shuffle=False)

    def _processes(self) -> tuple[int, int]:
        """(processes in the job, this one's rank)."""
        trainer = self.trainer
        return (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        return self._eval_loader("test")

    def eval_order(self, name: str) -> np.ndarray:
        """The order an evaluation loader visits its split's clips in (one process)."""
        ds = self.datasets[name]
        # Sorted by length: least padding. Models are padding-invariant, so order is harmless.
        return np.argsort(ds.lengths(), kind="stable") if self.bucket_by_length else np.arange(len(ds))

    def eval_clips(self, name: str) -> list[Clip]:
        """The clips of a split, in the order its evaluation loader visits them."""
        members = self._members(name)
        return [members[i] for i in self.eval_order(name)]

    def _eval_loader(self, name):
        ds = self.datasets[name]
        sampler = FixedOrder(self.eval_order(name))
        count, rank = self._processes()
        if count > 1:
            # Each clip scored exactly once across processes (a training shard is padded with
            # repeats, which would count some test clips twice).
            sampler = UnrepeatedDistributedSamplerWrapper(sampler, num_replicas=count, rank=rank, shuffle=False)
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

    def training_statistics(self) -> tuple[SpeakerStatistics, float] | None:
        """The pooled per-speaker statistics of the training speakers and their frame count
        (None: nothing is normalised per speaker): what the model keeps for a speaker whose other
        clips are not at hand (``ser.frontends.pooled.PooledStatistics``)."""
        if not self.by_speaker:
            return None
        speakers = {c.speaker for c, s in zip(self.clips, self.assignment) if s == "train" and c.speaker_known}
        total = sum(self.normalised.speaker_moments[name] for name in sorted(speakers))
        return self.normalizer.statistics(total), float(total[0].max())

    # -- records ---------------------------------------------------------------------------
    def test_group(self) -> str | None:
        """The session of the test clips where one session is tested (IEMOCAP's folds)."""
        sessions = {c.session for c, s in zip(self.clips, self.assignment) if s == "test"}
        return sessions.pop() if len(sessions) == 1 else None

    def split_counts(self) -> dict[str, int]:
        return {f"n_{name}": len(self.datasets[name]) for name in SPLITS}

    def write_split_csv(self, path: str | Path) -> None:
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["path", "speaker", "emotion", "split"])
            for clip, split in zip(self.clips, self.assignment):
                writer.writerow([clip.path, clip.speaker, clip.emotion or "", split])


def _warn_skipped(what: str, skipped: list[tuple[str, str]]) -> None:
    reasons = Counter(reason for _, reason in skipped)
    listing = "\n".join(f"  {path}: {reason}" for path, reason in skipped[:50])
    more = f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
    log.warning("Skipped %d file(s), %s (%s):\n%s%s", len(skipped), what,
                ", ".join(f"{n}x {r}" for r, n in reasons.most_common(3)), listing, more)
