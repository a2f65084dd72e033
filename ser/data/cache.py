"""Decode + resample + mono-mix once; every epoch after that reads one flat file.

A cache is keyed by the sample rate and every file's path, size and modification time, so
editing, adding or removing a file builds a new one. The waveforms of all clips sit end to
end in one float32 file; a clip is one ``pread`` of its byte range. The OS page cache holds
the file once, shared by every DataLoader worker and every parallel run, and no process's
resident memory grows with the corpus: reading through a memory map instead puts every
page a process touches into its RSS (the whole corpus after an epoch, in each worker),
which is what per-process memory accounting such as SLURM's sums and kills jobs over.
Nothing is ever written into the corpus folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.progress import track

from ser.data.audio import DECODE_THREADS, try_load_mono

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def cache_key(paths: list[str], sample_rate: int) -> str:
    digest = hashlib.sha1(f"v{FORMAT_VERSION}:{sample_rate}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"\n{path}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


class WaveformCache:
    """Read-only view of a built cache: ``cache[path]`` is that clip's float32 samples."""

    def __init__(self, data_file: Path, offsets: dict[str, tuple[int, int]], failed: dict[str, str]):
        self.data_file = data_file
        self.offsets = offsets  # path -> (first sample, number of samples)
        self.failed = failed  # path -> why it could not be decoded
        self._fd, self._pid = None, None

    def __contains__(self, path: str) -> bool:
        return path in self.offsets

    def __getitem__(self, path: str) -> np.ndarray:
        return self.read(path)

    def length(self, path: str) -> int:
        return self.offsets[path][1]

    def read(self, path: str, start: int = 0, count: int | None = None) -> np.ndarray:
        """Samples ``start`` to ``start + count`` of a clip (to its end by default), a fresh array."""
        first, length = self.offsets[path]
        count = length - start if count is None else min(count, length - start)
        samples = np.empty(count, dtype=np.float32)
        got = os.preadv(self._descriptor(), [memoryview(samples).cast("B")], 4 * (first + start))
        if got != samples.nbytes:
            raise OSError(f"the waveform cache {self.data_file} is truncated; delete it to rebuild")
        return samples

    def _descriptor(self) -> int:
        # One descriptor per process: DataLoader workers get their own on first read.
        if self._pid != os.getpid():
            self._fd, self._pid = os.open(self.data_file, os.O_RDONLY), os.getpid()
        return self._fd

    def __getstate__(self):  # sent to spawned workers: without this process's descriptor
        return {**self.__dict__, "_fd": None, "_pid": None}

    @classmethod
    def open(cls, paths: list[str], sample_rate: int, cache_dir: str | Path) -> WaveformCache:
        """Load the cache for exactly these files, building it first if needed."""
        base = Path(cache_dir).expanduser() / "waveforms" / cache_key(paths, sample_rate)
        index_file = base.with_suffix(".json")
        if not index_file.is_file():
            build(paths, sample_rate, base)
        index = json.loads(index_file.read_text())
        offsets = {p: (int(s), int(n)) for p, s, n in index["clips"]}
        return cls(base.with_suffix(".f32"), offsets, index["failed"])


def build(paths: list[str], sample_rate: int, base: Path) -> None:
    """Decode every file, on threads, into ``base``."""
    base.parent.mkdir(parents=True, exist_ok=True)
    tmp_data = base.with_suffix(f".f32.{os.getpid()}.tmp")
    clips, failed, offset = [], {}, 0
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool, open(tmp_data, "wb") as out:
        results = pool.map(lambda path: try_load_mono(path, sample_rate), paths)
        for path, (samples, error) in track(zip(paths, results), total=len(paths),
                                            description="Decoding audio into the cache",
                                            transient=True):
            if error is not None:
                failed[path] = error
                continue
            out.write(samples.tobytes())
            clips.append((path, offset, len(samples)))
            offset += len(samples)
    # Data first, index last, each renamed into place: a present index means a whole cache.
    os.replace(tmp_data, base.with_suffix(".f32"))
    tmp_index = base.with_suffix(f".json.{os.getpid()}.tmp")
    tmp_index.write_text(json.dumps({"sample_rate": sample_rate, "total": offset,
                                     "clips": clips, "failed": failed}))
    os.replace(tmp_index, base.with_suffix(".json"))
    log.info("Cached %d clips (%.1f min of audio) at %s", len(clips),
             offset / sample_rate / 60, base.with_suffix(".f32"))
