"""Train, test and report one speech emotion recognition run.

    python train.py                                # CNN-GRU on the built-in synthetic corpus
    python train.py model=lstm features=mfcc
    python train.py model=cnn_gru data=cremad data.root=/data/CREMA-D
    python train.py --help                         # every config group and option
"""

import sys

import hydra
from omegaconf import DictConfig

from ser.data.corpora import MissingCorpus


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from ser.train import run  # imported here so that --help and --cfg stay fast

    try:
        results = run(cfg)
    except MissingCorpus as err:
        print(f"\nerror: {err}\n", file=sys.stderr)
        sys.exit(2)
    # The value Hydra sweepers (Optuna) optimise.
    return results.get(cfg.get("optimized_metric", "test/uar"))


if __name__ == "__main__":
    main()
