from ser.data.corpora import (
    CremaD,
    EmoDB,
    Folder,
    Iemocap,
    MissingCorpus,
    MspPodcast,
    Multi,
    Ravdess,
    Tess,
)
from ser.data.emotions import EMOTIONS
from ser.data.synthetic import Synthetic

__all__ = ["EMOTIONS", "CremaD", "EmoDB", "Folder", "Iemocap", "MissingCorpus", "MspPodcast", "Multi", "Ravdess",
           "SERDataModule", "Synthetic", "Tess"]


def __getattr__(name: str):
    # The DataModule brings in Lightning (6 s to import on two cores); the corpora and the
    # config checks do not, so train.py can check a config (and build its corpus) first.
    if name == "SERDataModule":
        from ser.data.datamodule import SERDataModule

        return SERDataModule
    raise AttributeError(f"module 'ser.data' has no attribute {name!r}")
