"""What the loaders read: datasets over a cache, the batch samplers, and collation.

A dataset item is one clip of a split, read from a cache (only its cropped part):
``(rows[..., T], label)``; the collated batch is ``(inputs[B, ..., T] zero-padded, lengths[B],
labels[B])``. With the cache held on the device, items are only row spans and a batch is a
:class:`Spans`, gathered on the device after the transfer (``ser.data.cache.ResidentRows``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, Sampler

from ser.data.cache import ClipCache
from ser.frontends.normalize import SpeakerStatistics


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


class SpeakerStatisticsDataset(ClipDataset):
    """Clips with their speaker's statistics, for a front end that standardises what it computes
    from them by speaker: items are ``(rows, label, mean[F], std[F])`` (float32)."""

    def __init__(self, cache: ClipCache, paths: list[str], labels: list, max_len: int | None, crop: str,
                 statistics: list[SpeakerStatistics]):
        super().__init__(cache, paths, labels, max_len, crop)
        self.statistics = [tuple(torch.as_tensor(v, dtype=torch.float32) for v in (s.mean, s.std)) for s in statistics]

    def __getitem__(self, i):
        return *super().__getitem__(i), *self.statistics[i]


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
    """Zero-pad a list of (clip, label, *extras) along time, the last axis, to the longest clip;
    the true lengths travel along, and extras (tensors of one shape) are stacked after the labels."""
    clips, labels, *extras = zip(*items)
    lengths = torch.tensor([clip.shape[-1] for clip in clips])
    batch = torch.zeros(len(clips), *clips[0].shape[:-1], int(lengths.max()))
    for row, clip in zip(batch, clips):
        row[..., : clip.shape[-1]] = clip
    return batch, lengths, torch.tensor(labels), *(torch.stack(column) for column in extras)


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


class TrainingBatches(BatchSampler):
    """Training batches of ``batch_size`` clips in the sampler's order; a last batch of one clip
    joins the batch before it (which then holds ``batch_size + 1``).

    A network that normalises over the batch cannot train on one clip (BatchNorm's variance of
    one value: torch raises), and whether a split leaves one over is the remainder of a division
    (IEMOCAP's fold 4 at 32: 801 = 25 x 32 + 1). Dropping it would lose the same clip in every
    epoch whose order ends on it; joining it keeps every clip in every epoch. In a DDP job the
    sampler is this process's share (the data module shards it), so each share is batched by the
    same rule. A share of a single clip cannot be helped here: the data module refuses such a
    split before any work.
    """

    def __init__(self, sampler, batch_size: int):
        if batch_size < 2:
            raise ValueError(f"training batches hold at least 2 clips, not {batch_size}")
        super().__init__(sampler, batch_size, drop_last=False)  # every clip, every epoch

    @property
    def joins_last_clip(self) -> bool:
        """Whether the sampler's clips leave a last one over, which joins the batch before it."""
        full, rest = divmod(len(self.sampler), self.batch_size)
        return rest == 1 and full > 0

    def __len__(self):
        return -(-len(self.sampler) // self.batch_size) - self.joins_last_clip

    def __iter__(self):
        batches = super().__iter__()
        held = next(batches, None)
        for batch in batches:
            if len(batch) == 1:  # only the last batch can be short
                held = held + batch
            else:
                yield held
                held = batch
        if held is not None:
            yield held


class FixedOrder(Sampler):
    """Yields a precomputed order of indices."""

    def __init__(self, order):
        self.order = [int(i) for i in order]

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        return iter(self.order)
