"""Corpora, splits, caches and the DataModule.

Names are imported on first use: the DataModule brings in Lightning (6 s to import on two cores)
and the synthetic corpus rich, while the corpora and the config checks need neither (train.py
checks a config, and builds its corpus, first), and ser-predict's runtime reads audio through
``ser.data.audio`` where only numpy, soundfile and soxr are installed.
"""

from importlib import import_module

_HOMES = {"SERDataModule": "ser.data.datamodule", "Synthetic": "ser.data.synthetic", "EMOTIONS": "ser.data.emotions",
          **{name: "ser.data.corpora" for name in ("CremaD", "EmoDB", "Folder", "Iemocap", "MissingCorpus",
                                                    "MspPodcast", "Multi", "Ravdess", "Tess")}}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'ser.data' has no attribute {name!r}")
