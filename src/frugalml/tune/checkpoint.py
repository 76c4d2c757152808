"""Training checkpoints: written whole or not at all, and never read unless intact.

A checkpoint is one file, `step-N.ckpt` in the run's folder: a header line with the SHA-256 of
the payload, then the payload (`torch.save` of a dict of tensors and plain values, read back with
`weights_only=True`, so a checkpoint can hold no code). It is written to a temporary file, fsynced
and renamed into place, so a kill mid-write leaves the previous checkpoint as the newest; a file
whose hash does not match (a disk that lost the tail, an edited file) is skipped for the one
before it. The newest `KEEP` checkpoints stay, the older ones go.

Folders: `$FRUGALML_HOME/checkpoints/run-<run id>/`, or `job-<FRUGALML_JOB_ID>/` inside a job, so
that a retried job finds the checkpoints of the attempt that was killed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from frugalml.bundle import fsync_dir
from frugalml.lineage import JOB_ID_ENV

KEEP = 2
_MAGIC = b"frugalml-checkpoint-v1 sha256="
_NAME = re.compile(r"step-(\d+)\.ckpt")

log = logging.getLogger(__name__)


def run_folder(home: Path, run_id: str) -> Path:
    return home / "checkpoints" / f"run-{run_id}"


def job_folder(home: Path) -> Path | None:
    """The checkpoint folder of the job this process runs in, if it runs in one."""
    job = os.environ.get(JOB_ID_ENV)
    return home / "checkpoints" / f"job-{job}" if job else None


def checkpoints(folder: Path) -> list[Path]:
    """The checkpoint files in `folder`, oldest step first (temporary files excluded)."""
    found = [(int(m.group(1)), p) for p in _listing(folder) if (m := _NAME.fullmatch(p.name))]
    return [path for _, path in sorted(found)]


def save_checkpoint(folder: Path, step: int, state: dict[str, Any]) -> Path:
    """Write `state` as `step-<step>.ckpt` atomically; keep the newest `KEEP` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path = folder / f"step-{step}.ckpt"
    temp = folder / f".{path.name}.{os.getpid()}.tmp"
    with temp.open("wb") as handle:
        handle.write(_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n")
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    fsync_dir(folder)
    for old in checkpoints(folder)[:-KEEP]:
        old.unlink(missing_ok=True)
    for stale in folder.glob(".step-*.tmp"):  # left by a process killed mid-write
        if stale != temp:
            stale.unlink(missing_ok=True)
    return path


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The state saved in `path`, or None if the file is incomplete or not what was written."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    header, _, payload = data.partition(b"\n")
    if not header.startswith(_MAGIC) or header[len(_MAGIC) :].decode(errors="replace") != (
        hashlib.sha256(payload).hexdigest()
    ):
        return None
    return torch.load(io.BytesIO(payload), weights_only=True)


def latest_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The newest intact checkpoint in `folder`, or None; damaged ones are skipped (and logged)."""
    for path in reversed(checkpoints(folder)):
        state = read_checkpoint(path)
        if state is not None:
            return state
        log.warning("skipping damaged checkpoint %s", path)
    return None


def _listing(folder: Path) -> list[Path]:
    return list(folder.iterdir()) if folder.is_dir() else []
