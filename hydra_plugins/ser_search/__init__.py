"""Hydra instantiates sweepers only from the ``hydra_plugins`` package: this names ser's Optuna
sweeper (``ser/experiment/search.py``) there. Hydra imports every plugin module at start-up, so Optuna is
imported only once a search begins."""

from typing import Any

from hydra.plugins.sweeper import Sweeper


class OptunaSweeper(Sweeper):
    def __init__(self, **config: Any) -> None:
        self.config = config

    def setup(self, *, hydra_context, task_function, config) -> None:
        from ser.experiment.search import OptunaSearch

        self.search = OptunaSearch(**self.config)
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.search.sweep(arguments)
