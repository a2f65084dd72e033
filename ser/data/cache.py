"""Decode + resample + mono-mix once (and compute the model's frozen stage, e.g. the log-mel,
once); every epoch after that reads one flat file.

A cache holds the clips of a corpus end to end in one file, each clip a run of rows of a
fixed width: one sample per row for waveforms, one frame of ``n_mels`` values per row for
log-mel features (time-major, so a crop is one contiguous read). A clip is one ``pread`` of
its byte range. Readers always get float32, exactly what was computed (or, for a float16
feature cache, that rounded to float16: ``data.feature_cache``, measured in
``benchmarks/caches.py``); the index says how each clip is stored.

A waveform is stored in half the space wherever that loses nothing: a 16-bit (or 8-bit) PCM
file at the model's rate (CREMA-D, EmoDB, IEMOCAP and MSP-Podcast all are) as its own int16
samples with the offset and divisor :func:`ser.data.audio.centring` took off, from which the
very float32 samples of :func:`~ser.data.audio.load_mono` are restored (checked per clip while
the cache is built); any other file (resampled, multichannel, 24-bit, float) as float32. So
training reads exactly what ``ser-predict`` decodes from the same file.

The OS page cache holds the file once, shared by every DataLoader worker and every parallel
run, and no process's resident memory grows with the corpus: reading
through a memory map instead puts every page a process touches into its RSS (the whole
corpus after an epoch, in each worker), which is what per-process memory accounting such as
SLURM's sums and kills jobs over. Nothing is ever written into the corpus folder.

The waveform cache is keyed by the sample rate and every file's path, size and modification
time, so editing, adding or removing a file builds a new one; the feature cache is keyed by
its waveform cache and what the frozen stage says its output depends on.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from torch.nn.utils.rnn import pad_sequence

from ser.data.audio import DECODE_THREADS, BadAudio, centring, conditioned, decode_mono
from ser.errors import UserError
from ser.frontends.normalize import SpeakerNormalizer

log = logging.getLogger(__name__)
# 2: DC offset removed, peaks beyond full scale scaled back (audio.load_mono).
# 3: 16-bit waveforms stored as int16, features as float32 or float16; the index
#    names the format and the type, so that a cache of another format is rebuilt, never misread.
FORMAT_VERSION = 3
DATA_SUFFIX = ".rows"  # beside the index (.json)
FULL_SCALE = 32768  # 16-bit PCM: a sample of value q is q / 32768 (how soundfile reads it)


class FrozenStage(Protocol):
    """The part of a model whose output per clip never changes while it trains, handed to the
    data side by the composition root so that it is computed once per clip and cached (the
    log-mel of a spectral front end: ``ser.frontends.spectral.LogMelStage``)."""

    description: str  # what it computes, for the progress bar
    width: int  # values per output frame
    batch_size: int  # clips per call while the cache is built
    device: torch.device  # where it computes

    def to(self, device: torch.device) -> FrozenStage: ...  # compute there from now on

    def cache_key(self) -> dict: ...  # everything its output depends on

    def frame_lengths(self, samples: torch.Tensor) -> torch.Tensor: ...

    def estimated_bytes(self, samples: int, clips: int) -> int: ...  # its cache, for clips of samples in all

    def compute(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waves[B, T], lengths[B] -> outputs[B, width, frames], frames[B]"""
        ...


def cache_key(paths: list[str], sample_rate: int) -> str:
    digest = hashlib.sha1(f"v{FORMAT_VERSION}:{sample_rate}".encode())
    for path in paths:
        try:
            stat = os.stat(path)
        except FileNotFoundError:  # gone since the scan: decoding records it as failed
            digest.update(f"\n{path}\tmissing".encode())
            continue
        digest.update(f"\n{path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


class Pcm16(NamedTuple):
    """A clip as a waveform cache stores a 16-bit file: its float32 samples are
    ``clip((samples * scale - offset) / divisor, -1, 1)``, computed in float64."""

    samples: np.ndarray  # int16
    scale: float
    offset: float = 0.0
    divisor: float = 1.0

    def restored(self) -> np.ndarray:
        x = self.samples * self.scale  # float64, then each step as load_mono takes it
        x -= self.offset
        x /= self.divisor
        return np.clip(x, -1.0, 1.0).astype(np.float32)


def stored_waveform(source: np.ndarray, source_rate: int, sample_rate: int) -> Pcm16 | np.ndarray:
    """What a waveform cache stores of a file whose mono samples are ``source`` (float64, at
    ``source_rate``): its 16-bit samples where they restore ``load_mono``'s clip exactly, else
    that clip as float32."""
    samples = conditioned(source.copy(), source_rate, sample_rate)
    if source_rate == sample_rate:
        steps = source * FULL_SCALE
        if steps.min() >= -FULL_SCALE and steps.max() < FULL_SCALE and np.array_equal(steps, np.round(steps)):
            exact = Pcm16(steps.astype(np.int16), 1 / FULL_SCALE, *centring(source))
            if np.array_equal(exact.restored(), samples):  # checked, not assumed
                return exact
    return samples


class ClipCache:
    """Read-only view of a built cache: ``cache[path]`` is that clip's rows (float32)."""

    def __init__(self, data_file: Path, offsets: dict[str, tuple[int, int]], failed: dict[str, str],
                 width: int = 1, dtype: str = "float32", pcm: dict[str, tuple[float, float, float]] | None = None):
        self.data_file = data_file
        self.offsets = offsets  # path -> (first row, number of rows)
        self.failed = failed  # path -> why it could not be decoded
        self.width = width  # values per row: 1 (a waveform sample) or n_mels (a feature frame)
        self.dtype = np.dtype(dtype)  # how rows are stored; read() returns float32
        self.pcm = pcm or {}  # waveforms stored as 16-bit: path -> (scale, offset, divisor) of its Pcm16
        self.positions, position = {}, 0  # path -> where its bytes start, in row order
        for path in sorted(offsets, key=lambda p: offsets[p][0]):
            self.positions[path] = position
            position += offsets[path][1] * self.row_type(path).itemsize * width
        self.stored_size = position  # bytes its data file holds when whole
        self._fd, self._pid = None, None

    def row_type(self, path: str) -> np.dtype:
        return np.dtype(np.int16) if path in self.pcm else self.dtype

    def __contains__(self, path: str) -> bool:
        return path in self.offsets

    def __getitem__(self, path: str) -> np.ndarray:
        return self.read(path)

    def length(self, path: str) -> int:
        """Rows of a clip: samples of a waveform, frames of a feature matrix."""
        return self.offsets[path][1]

    def read(self, path: str, start: int = 0, count: int | None = None) -> np.ndarray:
        """Rows ``start`` to ``start + count`` of a clip (to its end by default), a fresh array:
        ``[rows]`` for waveforms, ``[rows, width]`` for features."""
        first, length = self.offsets[path]
        count = length - start if count is None else min(count, length - start)
        rows = np.empty((count, self.width) if self.width > 1 else count, dtype=self.row_type(path))
        position = self.positions[path] + rows.itemsize * self.width * start
        got = os.preadv(self._descriptor(), [memoryview(rows).cast("B")], position)
        if got != rows.nbytes:
            raise OSError(f"the cache {self.data_file} is truncated; delete it to rebuild")
        if path in self.pcm:
            return Pcm16(rows, *self.pcm[path]).restored()
        return rows.astype(np.float32, copy=False)

    def stored(self, path: str) -> bytes:
        """A clip's bytes as the cache stores them."""
        size = self.offsets[path][1] * self.row_type(path).itemsize * self.width
        return os.pread(self._descriptor(), size, self.positions[path])

    @property
    def nbytes(self) -> int:
        return self.data_file.stat().st_size

    def _descriptor(self) -> int:
        # One descriptor per process: DataLoader workers get their own on first read.
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.data_file, os.O_RDONLY), os.getpid()
        return self._fd

    def __getstate__(self):  # sent to spawned workers: without this process's descriptor
        return {**self.__dict__, "_fd": None, "_pid": None}

    @classmethod
    def load(cls, base: Path) -> ClipCache:
        index = json.loads(base.with_suffix(".json").read_text())
        offsets = {p: (int(s), int(n)) for p, s, n, *_ in index["clips"]}
        pcm = {p: tuple(gain) for p, _, _, *gain in index["clips"] if gain}
        return cls(base.with_suffix(DATA_SUFFIX), offsets, index["failed"], index["width"], index["dtype"], pcm)


class ResidentRows:
    """Every row of a cache in one tensor on a device (an accelerator's memory, typically):
    a batch of clips is then one gather there instead of a read, a copy and a transfer."""

    CHUNK_BYTES = 64 * 2**20  # read and sent in pieces: the host never holds the whole cache

    def __init__(self, rows: torch.Tensor):
        self.rows = rows  # [rows, width] or [rows], float32

    @classmethod
    def load(cls, cache: ClipCache, device: torch.device | str) -> ResidentRows:
        total = sum(rows for _, rows in cache.offsets.values())
        shape = (total, cache.width) if cache.width > 1 else (total,)
        size = 4 * cache.width * total
        try:
            rows = torch.empty(shape, dtype=torch.float32, device=device)
        except torch.OutOfMemoryError:
            raise UserError(f"data.cache_on_device: the cache ({size / 1e9:.1f} GB as float32) does not fit in "
                            f"the free memory of {device}; set data.cache_on_device=auto (holds it only "
                            "where it fits) or false (loader workers read it)") from None
        filled = 0
        for block in float_blocks(cache, cls.CHUNK_BYTES):
            rows[filled : filled + len(block)].copy_(torch.from_numpy(block))
            filled += len(block)
        log.info("Holding the cache %s on %s (%.2f GB)", cache.data_file.name, device, size / 1e9)
        return cls(rows)

    def gather(self, starts: torch.Tensor, lengths: torch.Tensor, longest: int) -> torch.Tensor:
        """Clips as rows ``[starts, starts + lengths)``, zero-padded to ``longest`` along the last
        axis: ``[B, longest]`` (waveforms) or ``[B, width, longest]`` (features), the batch
        the loaders would have built on the host."""
        steps = torch.arange(longest, device=starts.device)
        real = steps < lengths[:, None]  # [B, longest]
        # Padding positions read the clip's first row (always in range) and are zeroed after.
        index = starts[:, None] + steps * real
        clips = self.rows[index]  # [B, longest(, width)]
        if clips.dim() == 3:
            return (clips * real[..., None]).transpose(1, 2).contiguous()
        return clips * real


def float_blocks(cache: ClipCache, nbytes: int) -> Iterator[np.ndarray]:
    """Every row of ``cache`` in order, as float32 blocks of about ``nbytes``: clip by clip
    through :meth:`ClipCache.read`, the one decoder of stored rows."""
    block, size = [], 0
    for path in cache.positions:
        block.append(cache.read(path))
        size += block[-1].nbytes
        if size >= nbytes:
            yield np.concatenate(block)
            block, size = [], 0
    if block:
        yield np.concatenate(block)


class WaveformCache(ClipCache):
    """Every clip decoded, mixed to mono and resampled once: one sample per row."""

    @classmethod
    def open(cls, paths: list[str], sample_rate: int, cache_dir: str | Path) -> WaveformCache:
        """Load the cache for exactly these files, building it first if needed."""
        base = Path(cache_dir).expanduser() / "waveforms" / cache_key(paths, sample_rate)

        def decode(path: str) -> tuple[np.ndarray | Pcm16 | None, str | None]:
            try:
                source, source_rate = decode_mono(path)
            except BadAudio as err:
                return None, str(err)
            return stored_waveform(source, source_rate, sample_rate), None

        def build():
            with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
                results = ordered_map(pool, decode, paths, ahead=4 * DECODE_THREADS)
                write(base, zip(paths, results), len(paths), "Decoding audio into the cache", "float32",
                      sample_rate=sample_rate)
        built_once(base, build)
        return cls.load(base)


class FeatureCache(ClipCache):
    """The frozen stage's output for every clip of a waveform cache, computed once with the
    model's own modules (for log-mel: before the per-utterance normalisation, which a crop
    changes): one frame per row."""

    @classmethod
    def open(cls, waveforms: WaveformCache, stage: FrozenStage, cache_dir: str | Path,
             device: torch.device | None = None, dtype: str = "float32", shares: Shares | None = None) -> FeatureCache:
        """Load the features of every clip in ``waveforms``, computing them first if needed
        (on ``device``, where the model will train; default: where the stage is), stored as
        ``dtype`` (float32 or float16). ``shares``: every process of the job calls this, and
        each computes its share of the clips (see :func:`built_in_shares`)."""
        spec = {"waveforms": waveforms.data_file.stem, "dtype": dtype, **stage.cache_key()}
        key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        base = Path(cache_dir).expanduser() / "features" / key
        order = sorted(waveforms.offsets, key=waveforms.length)  # batches of similar length: little padding

        def build(target: Path, paths: list[str], description: str):
            float32_bytes = stage.estimated_bytes(sum(waveforms.length(p) for p in paths), len(paths))
            log.info("Computing %s once for %d clips into %s (about %s)", stage.description, len(paths),
                     target.with_suffix(DATA_SUFFIX), human_size(float32_bytes * np.dtype(dtype).itemsize // 4))
            if device is not None:
                stage.to(device)
            write(target, computed_once(waveforms, paths, stage), len(paths), description, dtype,
                  width=stage.width, spec=spec)

        description = f"Computing {stage.description} once"
        if shares is None or shares.count == 1:
            built_once(base, lambda: build(base, order, description))
        else:
            built_in_shares(base, order, shares, lambda part, share: build(
                part, share, f"{description} (share {shares.rank + 1} of {shares.count})"))
        return cls.load(base)


class Shares(NamedTuple):
    """This process's place among the processes of a job (DDP) that build a cache together."""

    rank: int  # 0 .. count - 1
    count: int
    barrier: Callable[[], None]  # returns once every process of the job has called it


def built_in_shares(base: Path, order: list[str], shares: Shares, build: Callable[[Path, list[str]], None]) -> None:
    """Make sure an intact cache of the clips ``order`` lies at ``base``, every process of the
    job building ``order[rank::count]`` with ``build(part, share)`` into a part beside it (each
    device busy, none waiting), then the first assembling the parts into the cache, byte for
    byte the file one process would have written. Called by every process at once: all find the
    cache intact, or all build."""
    if base.with_suffix(".json").is_file() and damage(base) is None:
        return
    part = share_part(base, shares.rank, shares.count)
    build(part, order[shares.rank :: shares.count])
    shares.barrier()
    if shares.rank == 0:
        parts = [share_part(base, rank, shares.count) for rank in range(shares.count)]
        with open(base.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            assemble(base, order, parts)
    shares.barrier()


def share_part(base: Path, rank: int, count: int) -> Path:
    return base.with_name(f"{base.name}-part{rank}of{count}")


def assemble(base: Path, order: list[str], parts: list[Path]) -> None:
    """Write the cache at ``base`` from the caches ``parts``, its clips in ``order``: each clip's
    stored bytes copied as they are, one clip in memory at a time; the parts then removed."""
    caches = [ClipCache.load(part) for part in parts]
    where = {path: cache for cache in caches for path in cache.offsets}
    tmp_data = base.with_suffix(f"{DATA_SUFFIX}.{os.getpid()}.tmp")
    clips, offset = [], 0
    with open(tmp_data, "wb") as out:
        for path in order:
            cache = where[path]
            out.write(cache.stored(path))
            clips.append((path, offset, cache.length(path), *cache.pcm.get(path, ())))
            offset += cache.length(path)
    info = json.loads(parts[0].with_suffix(".json").read_text())
    failed = {p: why for cache in caches for p, why in cache.failed.items()}
    os.replace(tmp_data, base.with_suffix(DATA_SUFFIX))
    tmp_index = base.with_suffix(f".json.{os.getpid()}.tmp")
    tmp_index.write_text(json.dumps({**info, "total": offset, "clips": clips, "failed": failed}))
    os.replace(tmp_index, base.with_suffix(".json"))
    for part in parts:
        for suffix in (DATA_SUFFIX, ".json", ".lock"):
            part.with_suffix(suffix).unlink(missing_ok=True)
    log.info("Assembled %d clips from %d shares at %s", len(clips), len(parts), base.with_suffix(DATA_SUFFIX))


class SpeakerNormalised(ClipCache):
    """Features normalised per speaker, as the front end's :class:`SpeakerNormalizer` says
    (``ser.frontends.normalize``): each value of a frame (a mel bin, a functional) to zero mean
    and unit variance over every frame of that speaker's clips. The standard in speech emotion
    recognition: it removes what a speaker's voice and microphone add to every clip (register,
    vocal tract, channel colour) and keeps how their clips differ from each other. It uses each
    speaker's unlabelled audio, the test speakers' included. The index keeps each speaker's
    moments, from which the pooled statistics of the training speakers are summed."""

    def __init__(self, *args, speaker_moments: dict[str, np.ndarray] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.speaker_moments = speaker_moments or {}  # speaker -> [3, width] (count, sum, sum of squares)

    @classmethod
    def open(cls, features: ClipCache, speaker_of: dict[str, str | None], normalizer: SpeakerNormalizer,
             cache_dir: str | Path, pooled_from: list[str] = ()) -> SpeakerNormalised:
        """The clips of ``speaker_of`` (path -> speaker, or None for an unknown speaker),
        normalised; a clip of an unknown speaker by the pooled statistics of the speakers
        ``pooled_from`` (the training speakers). Built once per grouping."""
        grouping = hashlib.sha1(json.dumps(sorted(speaker_of.items(), key=lambda kv: kv[0])).encode()).hexdigest()[:16]
        spec = {"features": features.data_file.stem, "speakers": grouping, "rule": normalizer.version}
        if None in speaker_of.values():
            spec["pooled_from"] = hashlib.sha1(json.dumps(sorted(pooled_from)).encode()).hexdigest()[:16]
        key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        base = Path(cache_dir).expanduser() / "by_speaker" / key

        def build():
            totals = speaker_totals(features, speaker_of, normalizer)
            normalised = normalised_by_speaker(features, speaker_of, normalizer, totals, pooled_from)
            write(base, normalised, len(speaker_of), "Normalising features per speaker", features.dtype.name,
                  width=features.width, spec=spec, speaker_moments={name: total.tolist() for name, total in totals.items()})
        built_once(base, build)
        cache = cls.load(base)
        index = json.loads(base.with_suffix(".json").read_text())
        cache.speaker_moments = {name: np.asarray(total) for name, total in index["speaker_moments"].items()}
        return cache


def speaker_totals(features: ClipCache, speaker_of: dict[str, str | None],
                   normalizer: SpeakerNormalizer) -> dict[str, np.ndarray]:
    """Each known speaker's moments, summed over their clips (one pass over the cache)."""
    totals: dict[str, np.ndarray] = {}
    for path, speaker in speaker_of.items():
        if speaker is not None:
            totals[speaker] = totals.get(speaker, 0) + normalizer.moments(features[path])
    return totals


def normalised_by_speaker(features: ClipCache, speaker_of: dict[str, str | None], normalizer: SpeakerNormalizer,
                          totals: dict[str, np.ndarray], pooled_from=()) -> Iterator[tuple[str, tuple]]:
    """(path, (rows normalised by its speaker's statistics, None)); an unknown speaker's
    clip by the pooled statistics of the speakers ``pooled_from``."""
    statistics = {speaker: normalizer.statistics(total) for speaker, total in totals.items()}
    if None in speaker_of.values():
        pool = [totals[s] for s in pooled_from if s in totals]
        if not pool:
            raise UserError("clips of unknown speakers are standardised with the training speakers' pooled "
                            "statistics, but no training clip has a known speaker")
        statistics[None] = normalizer.statistics(sum(pool))
    for path, speaker in speaker_of.items():
        yield path, (normalizer.apply(features[path], statistics[speaker]), None)


def built_once(base: Path, build) -> None:
    """Make sure an intact cache lies at ``base``, calling ``build()`` if none does.

    Processes that open the same cold cache at once (a joblib or SLURM sweep) take turns on a
    lock beside it: the first builds, the others find it built. A damaged cache (its data file
    missing or not the size its index says, e.g. a copy cut short or a full disk) is rebuilt
    with a warning, here, before training starts, rather than found by a loader mid-epoch.
    """
    base.parent.mkdir(parents=True, exist_ok=True)
    with open(base.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = base.with_suffix(".json")
        if index.is_file():
            problem = damage(base)
            if problem is None:
                return
            log.warning("The cache %s cannot be read (%s): rebuilding it", base.with_suffix(DATA_SUFFIX), problem)
            index.unlink()
        build()


def damage(base: Path) -> str | None:
    """What is wrong with the cache at ``base`` (None: of this format, and its data file has
    every row its index lists)."""
    try:
        index = json.loads(base.with_suffix(".json").read_text())
        if (written := index.get("format")) != FORMAT_VERSION:
            return f"written in format {written or '2 or older'}; this version of ser reads format {FORMAT_VERSION}"
        expected = ClipCache.load(base).stored_size  # the layout as readers will take it
    except (ValueError, KeyError, TypeError) as err:
        return f"unreadable index: {err}"
    data = base.with_suffix(DATA_SUFFIX)
    if not data.is_file():
        return "no data file"
    if (size := data.stat().st_size) != expected:
        return f"{size} bytes, its index lists {expected}"
    return None


@torch.no_grad()
def computed_once(waveforms: WaveformCache, paths: list[str], stage: FrozenStage) -> Iterator[tuple[str, tuple]]:
    """(path, (frames[T, width], None)) for every clip, computed in batches of similar length."""
    order = sorted(paths, key=waveforms.length)
    for start in range(0, len(order), stage.batch_size):
        chunk = order[start : start + stage.batch_size]
        waves = pad_sequence([torch.from_numpy(waveforms[p]) for p in chunk], batch_first=True)
        lengths = torch.tensor([waveforms.length(p) for p in chunk])
        outputs, frames = stage.compute(waves.to(stage.device), lengths.to(stage.device))
        for path, clip, n in zip(chunk, outputs.float().cpu(), frames.tolist()):
            yield path, (clip[:, :n].T.contiguous().numpy(), None)


def human_size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def ordered_map(pool: Executor, function: Callable, items: Iterable, ahead: int) -> Iterator:
    """``pool.map`` with at most ``ahead`` calls in flight: ``Executor.map`` submits every item
    at once, so its queue of calls and their finished results grows with the corpus."""
    pending = deque()
    for item in items:
        pending.append(pool.submit(function, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


class ClipsPerSecond(ProgressColumn):
    """A progress bar's column: how many clips a second go into the cache."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} clips/s" if task.speed else "", style="progress.data.speed")


def building(results: Iterable, total: int, description: str) -> Iterator:
    """``results`` with a progress bar that says how many clips a second go into a cache."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), ClipsPerSecond(),
               TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        yield from progress.track(results, total=total, description=description)


def write(base: Path, results: Iterable[tuple[str, tuple[np.ndarray | Pcm16 | None, str | None]]], total: int,
          description: str, dtype: str, width: int = 1, **info) -> None:
    """Write (path, (rows, None) or (None, why it failed)) into the cache at ``base``, rows
    stored as ``dtype``, a :class:`Pcm16` clip as its int16 samples."""
    base.parent.mkdir(parents=True, exist_ok=True)
    tmp_data = base.with_suffix(f"{DATA_SUFFIX}.{os.getpid()}.tmp")
    clips, failed, offset = [], {}, 0
    with open(tmp_data, "wb") as out:
        for path, (rows, error) in building(results, total, description):
            if error is not None:
                failed[path] = error
                continue
            if isinstance(rows, Pcm16):
                out.write(rows.samples.tobytes())
                clips.append((path, offset, len(rows.samples), rows.scale, rows.offset, rows.divisor))
            else:
                out.write(np.ascontiguousarray(rows, dtype=dtype).tobytes())
                clips.append((path, offset, len(rows)))
            offset += clips[-1][2]
    # Data first, index last, each renamed into place: a present index means a whole cache.
    os.replace(tmp_data, base.with_suffix(DATA_SUFFIX))
    tmp_index = base.with_suffix(f".json.{os.getpid()}.tmp")
    tmp_index.write_text(json.dumps({**info, "format": FORMAT_VERSION, "dtype": dtype, "width": width,
                                     "total": offset, "clips": clips, "failed": failed}))
    os.replace(tmp_index, base.with_suffix(".json"))
    log.info("Cached %d clips (%d rows of %d, %s) at %s", len(clips), offset, width, dtype,
             base.with_suffix(DATA_SUFFIX))
