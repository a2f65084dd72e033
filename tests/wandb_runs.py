"""Read what an offline W&B run wrote, from its own record file (``run-<id>.wandb``).

W&B 0.31 no longer ships a reader for the file. It is a LevelDB-style log: a 7-byte header,
then 32 KiB blocks of chunks (crc32 4 bytes, length 2, type 1: full/first/middle/last), each
whole record one ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK, HEADER, CHUNK = 32 * 1024, 7, 7
FULL, LAST = 1, 4


def records(path: Path):
    data, pos, pending = path.read_bytes(), HEADER, b""
    while pos + CHUNK <= len(data):
        if BLOCK - pos % BLOCK < CHUNK:  # a block's tail too short for a chunk is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + CHUNK])
        pending += data[pos + CHUNK:pos + CHUNK + length]
        pos += CHUNK + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@dataclass
class OfflineRun:
    group: str = ""
    run_id: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    exit_code: int | None = None


def read_run(folder: Path) -> OfflineRun:
    """``folder`` is one ``offline-run-*`` directory."""
    (path,) = folder.glob("run-*.wandb")
    run = OfflineRun()
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.group, run.run_id = record.run.run_group, record.run.run_id
            run.config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            run.config.update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            run.history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                for i in record.history.item})
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def offline_runs(root: Path) -> list[OfflineRun]:
    return [read_run(folder) for folder in sorted(root.rglob("offline-run-*")) if folder.is_dir()]
