"""openSMILE functionals of clips, on every core, without torch: the eGeMAPS front end computes them
with this, and so does an exported eGeMAPS model's runtime (openSMILE cannot live in an ONNX graph)."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ser.errors import not_one_of

log = logging.getLogger(__name__)
# Shared by every user in a process, never part of one (a front end is copied and pickled).
_THREAD_SMILES = threading.local()
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def feature_set_of(name: str):
    import opensmile

    try:
        return opensmile.FeatureSet[name]
    except KeyError:
        raise not_one_of("features.feature_set", name, [f.name for f in opensmile.FeatureSet]) from None


class Functionals:
    """The functionals of ``feature_set`` (e.g. eGeMAPSv02's 88) of clips at ``sample_rate``,
    ``threads`` clips at once (auto: one per core)."""

    def __init__(self, feature_set: str = "eGeMAPSv02", sample_rate: int = 16000, threads: int | str = "auto"):
        import opensmile

        if not (threads == "auto" or (isinstance(threads, int) and threads >= 1)):
            raise not_one_of("features.threads", threads, ["auto", "a count >= 1"])
        self.feature_set, self.sample_rate = feature_set, sample_rate
        self.threads = len(os.sched_getaffinity(0)) if threads == "auto" else threads
        smile = opensmile.Smile(feature_set=feature_set_of(feature_set),
                                feature_level=opensmile.FeatureLevel.Functionals)
        self.names = list(smile.feature_names)

    def of(self, clips: list[np.ndarray]) -> np.ndarray:
        """``[len(clips), len(names)]`` float32; what openSMILE cannot measure (NaN) is 0, said once."""
        rows = np.stack(list(self._pool().map(self._one, clips)) if self.threads > 1 and len(clips) > 1
                        else [self._one(clip) for clip in clips])
        broken = ~np.isfinite(rows).all(1)
        if broken.any():  # openSMILE fills what it cannot measure with NaN: never hand that on
            log.warning("openSMILE could not measure %d of %d clips (too short?): their missing "
                        "functionals are set to 0", int(broken.sum()), len(rows))
            rows = np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)
        return rows.astype(np.float32)

    def _one(self, clip: np.ndarray) -> np.ndarray:
        """One clip's functionals, with this thread's own openSMILE instance (openSMILE runs in C
        without Python's lock, so threads use every core; an instance is not shared between them)."""
        smile = getattr(_THREAD_SMILES, self.feature_set, None)
        if smile is None:
            import opensmile

            smile = opensmile.Smile(feature_set=feature_set_of(self.feature_set),
                                    feature_level=opensmile.FeatureLevel.Functionals)
            setattr(_THREAD_SMILES, self.feature_set, smile)
        return smile.process_signal(clip, self.sample_rate).to_numpy()[0]

    def _pool(self) -> ThreadPoolExecutor:
        with _POOL_LOCK:
            pool = _POOLS.get(self.threads)
            if pool is None:
                pool = _POOLS[self.threads] = ThreadPoolExecutor(self.threads, thread_name_prefix="opensmile")
            return pool
