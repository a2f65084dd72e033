"""Train, test and report one speech emotion recognition run.

    python train.py                                # CNN-GRU on the built-in synthetic corpus
    python train.py model=lstm features=mfcc
    python train.py model=cnn_gru data=cremad data.root=/data/CREMA-D
    python train.py --help                         # every config group and option
"""

import sys

import hydra
from omegaconf import DictConfig

from ser.errors import find_user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from ser.train import in_search, run  # imported here so that --help and --cfg stay fast

    try:
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


if __name__ == "__main__":
    main()
