"""The DataModule's config checks, importable without torch or Lightning.

:class:`~ser.data.datamodule.SERDataModule` runs them when it is built; ``train.py`` runs the
very same ones on the composed config before it imports Lightning (6 s of a start on two
cores), so that a mistake is one paragraph within a second or two.
"""

from __future__ import annotations

from ser.data.emotions import check_emotions
from ser.data.splits import METHODS, read_split_file
from ser.errors import ConfigError, not_one_of

EVAL_CROPS = ("center", "none")
CACHE_ON_DEVICE = ("auto", True, False)
FEATURE_CACHES = ("float32", "float16")  # how a frozen stage's cache stores its output


def check_data_options(*, emotions=("anger", "sadness"), split: str = "speaker", val_fraction: float = 0.1,
                       test_fraction: float = 0.2, fold: int = 0, num_folds: int = 5, batch_size: int = 32,
                       eval_batch_size: int | None = None, num_workers: int | str = "auto",
                       max_seconds: float | None = None, eval_crop: str = "center",
                       cache_on_device: bool | str = "auto", split_file: str | None = None,
                       feature_cache: str = "float32", **_other) -> None:
    """Raise :class:`ConfigError` for a ``data.*`` value that cannot work. Options left out
    are not checked (each default is valid); options this function does not know are ignored."""
    check_emotions(emotions)
    check_split(split, val_fraction, test_fraction, fold, num_folds)
    if split == "file":
        read_split_file(split_file)
    # A training batch of one clip cannot train a batch normalisation; evaluation can score one.
    for key, size, least in (("batch_size", batch_size, 2), ("eval_batch_size", eval_batch_size or batch_size, 1)):
        if not (isinstance(size, int) and not isinstance(size, bool) and size >= least):
            raise ConfigError(f"data.{key}={size!r} is not valid: a batch is a whole number of clips, >= {least}"
                              + (" (a batch of one cannot train a batch normalisation)." if least > 1 else "."))
    if not (num_workers == "auto" or (isinstance(num_workers, int) and num_workers >= 0)):
        raise ConfigError(f"data.num_workers={num_workers!r} is not valid: use auto or a count >= 0.")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ConfigError(f"data.max_seconds={max_seconds!r} is not valid: use a length in seconds > 0, "
                          "or null to keep whole clips.")
    if eval_crop not in EVAL_CROPS:
        raise not_one_of("data.eval_crop", eval_crop, EVAL_CROPS)
    if cache_on_device not in CACHE_ON_DEVICE:
        raise not_one_of("data.cache_on_device", cache_on_device, ("auto", "true", "false"))
    if feature_cache not in FEATURE_CACHES:
        raise not_one_of("data.feature_cache", feature_cache, FEATURE_CACHES)


def check_split(split: str, val_fraction: float, test_fraction: float, fold: int, num_folds: int) -> None:
    """What can be said of the split settings before the corpus is read."""
    if split not in METHODS:
        raise not_one_of("data.split", split, METHODS)
    for key, share in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(share, (int, float)) and 0 < share < 1):
            raise ConfigError(f"data.{key}={share!r} is not valid: a share of the speakers, between 0 and 1.")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction:g} leaves "
                          "no speakers for training: keep their sum below 1.")
    if split == "kfold":
        if not (isinstance(num_folds, int) and num_folds >= 3):
            raise ConfigError(f"data.num_folds={num_folds!r} is not valid: k-fold needs at least 3 folds "
                              "(one test, one validation, the rest training).")
        if not (isinstance(fold, int) and 0 <= fold < num_folds):
            raise ConfigError(f"data.fold={fold!r} is not valid: with data.num_folds={num_folds} use 0 to {num_folds - 1}.")
