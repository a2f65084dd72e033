"""FunASR, the reference ser's emotion2vec is checked against, in an environment of its own.

FunASR is heavy (ModelScope, jieba, umap, a websocket server...) and stays out of ser's
dependencies. The tests make a small virtual environment at ``$SER_FUNASR_ENV`` (default
``~/.cache/ser/funasr-reference``), once per machine (about 30 s): FunASR itself without its
requirements, the two its emotion2vec modules import (kaldiio, librosa), and a line that lends it
this environment's torch, numpy and omegaconf instead of a second copy. CI makes it like any
machine, from the package index.

There ``funasr_emotion2vec.py`` builds FunASR's own ``Emotion2vec`` class with random weights,
saves it as FunASR distributes checkpoints, and writes its hidden states, clip by clip, for ser to
match. What it writes is kept per machine too (keyed by the script and the variant), so the
reference runs once, not once per test worker.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from ser.experiment.side_env import made_once, side_python

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "funasr_emotion2vec.py"
# 1.4.16: the release the reference ran on (its emotion2vec modules are FunASR's port of
# data2vec 2.0's fairseq code). Without --no-deps pip would bring ModelScope and the rest.
INSTALLS = [["funasr==1.4.16", "--no-deps"], ["kaldiio>=2.18,<3", "librosa>=0.10,<0.12"]]


def reference_home() -> Path:
    return Path(os.environ.get("SER_FUNASR_ENV", Path.home() / ".cache" / "ser" / "funasr-reference"))


def funasr_checkpoint(variant: str) -> Path:
    """A folder FunASR wrote for ``variant``: ``checkpoint/`` (config.yaml, model.pt, tokens.txt)
    and ``reference.pt`` (the clips, and FunASR's states of each clip alone)."""
    python = side_python(reference_home(), INSTALLS, borrow_site_packages=True)
    key = hashlib.sha1(SCRIPT.read_bytes() + variant.encode()).hexdigest()[:12]

    def make(staging: Path) -> None:
        run = subprocess.run([str(python), str(SCRIPT), str(staging), variant], capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"FunASR's reference failed:\n{run.stderr[-3000:]}")

    return made_once(reference_home().with_name("funasr-made") / f"{variant}-{key}", make)
