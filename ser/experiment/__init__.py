"""Running an experiment: what ``train.py`` and ``sweep.py`` do with a composed config.

``preflight`` checks it before Lightning is imported; ``train`` fits, tests and reports one
run; ``search`` (Optuna, through Hydra's sweeper plugin) and ``sweep_engine`` (W&B's open
sweep engine, in ``side_env``'s environment of its own) choose the next trial; ``tracking``
keeps W&B and the CSV history; ``callbacks`` and ``console`` shape a run's checkpoints and
what it prints. Imports the learning core and the evidence wing, never serving.
"""
