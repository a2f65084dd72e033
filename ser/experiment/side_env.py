"""A small virtual environment of its own, for a tool that cannot share ``ser``'s: W&B's sweep
engine (it pins ``numpy<2``), or FunASR, the reference the tests check emotion2vec against (its
requirements would pull in a second speech toolkit).

It is made once (:func:`made_once`: under a lock, so that two processes starting at once make it
once, and whole or not at all: built beside its final path, then renamed).
"""

from __future__ import annotations

import fcntl
import shutil
import site
import subprocess
import venv
from collections.abc import Callable
from pathlib import Path


class SideEnvironmentError(RuntimeError):
    """pip could not install what the environment needs; the message is pip's last line."""


def made_once(path: Path, make: Callable[[Path], None]) -> Path:
    """``path``, made by ``make(staging)`` unless it exists: under a lock, beside ``path``, then
    renamed into place, so that it exists whole or not at all."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            staging = path.with_name(path.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            try:
                make(staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            staging.rename(path)
    return path


def side_python(home: Path, installs: list[list[str]], borrow_site_packages: bool = False) -> Path:
    """The Python of the environment at ``home``, made if it does not exist yet: one
    ``pip install`` per entry of ``installs`` (its arguments). ``borrow_site_packages``: it also
    sees this environment's packages (after its own), so that a tool needing torch does not
    install a second copy of it."""
    return made_once(home, lambda staging: _build(staging, installs, borrow_site_packages)) / "bin" / "python"


def _build(staging: Path, installs: list[list[str]], borrow_site_packages: bool) -> None:
    venv.create(staging, with_pip=True)
    if borrow_site_packages:
        own = next(staging.glob("lib/python*/site-packages"))
        (own / "borrowed.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    for arguments in installs:
        pip = subprocess.run([str(staging / "bin" / "python"), "-m", "pip", "install", "-q", *arguments],
                             capture_output=True, text=True)
        if pip.returncode != 0:
            said = pip.stderr.strip().splitlines()
            raise SideEnvironmentError(said[-1] if said else f"pip exited with {pip.returncode}")
