from ser.data.corpora import CremaD, EmoDB, Folder, MissingCorpus, Multi, Ravdess, Tess
from ser.data.datamodule import SERDataModule
from ser.data.emotions import EMOTIONS
from ser.data.synthetic import Synthetic

__all__ = ["EMOTIONS", "CremaD", "EmoDB", "Folder", "MissingCorpus", "Multi", "Ravdess",
           "SERDataModule", "Synthetic", "Tess"]
