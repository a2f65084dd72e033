"""Train, test and report one speech emotion recognition run.

    python train.py                                # the default recipe on the built-in synthetic corpus
    python train.py model=lstm features=mfcc
    python train.py model=cnn_gru data=cremad data.root=/data/CREMA-D
    python train.py --help                         # every config group and option
"""

import sys

try:
    import hydra
except ImportError:  # a prediction-only install (ser[predict]) has no training stack
    sys.exit('train.py needs the training stack, which this environment lacks: pip install -e ".[dev]" '
             '(or ".[train]")')
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ser.errors import find_user_error
from ser.evidence.grid import add_test_corpora
from ser.experiment.preflight import check_config


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        add_test_corpora(cfg)  # test_on=[names] -> their data configs, checked with the rest
        check_config(cfg)  # before Lightning is imported (6 s): a config mistake ends the run in seconds
        from ser.experiment.train import (
            run,  # imported here so that --help, --cfg and mistakes stay fast
        )

        results = run(cfg)
    except Exception as err:
        user_error = find_user_error(err)
        if user_error is None:
            raise
        if in_search():
            raise user_error from None  # the sweeper records the trial as failed and goes on
        print(f"\nerror: {user_error}\n", file=sys.stderr)  # the user's to fix: no traceback
        sys.exit(2)
    # The value Hydra sweepers (Optuna) optimise.
    return results.get(cfg.get("optimized_metric", "test/uar"))


def in_search() -> bool:
    """Whether this run is a trial of ser's Optuna sweeper, which records failed trials."""
    try:
        return HydraConfig.get().sweeper.get("_target_") == "hydra_plugins.ser_search.OptunaSweeper"
    except ValueError:
        return False


if __name__ == "__main__":
    main()
