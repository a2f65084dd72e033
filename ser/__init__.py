"""ser: speech emotion recognition experiments that just run."""

import os
import secrets

try:
    from omegaconf import OmegaConf
except ImportError:  # the prediction-only install (ser[predict]) has no configs to resolve
    OmegaConf = None

# ${ser.unique:} in the run and sweep folder names (conf/hydra/default.yaml): the process id
# and a random suffix, so that two runs started in the same second (a job array, two
# terminals) never share a folder. Cached: one value per config, however often it is read.
if OmegaConf is not None and not OmegaConf.has_resolver("ser.unique"):
    OmegaConf.register_new_resolver("ser.unique", lambda: f"{os.getpid()}-{secrets.token_hex(2)}", use_cache=True)
