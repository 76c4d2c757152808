"""Bundles: immutable, hash-verified model directories that every stage exchanges.

A bundle is a folder holding `bundle.json` (the manifest) beside the model files. A PyTorch
bundle's folder is also a Hugging Face model folder (config, weights, tokenizer, modeling code).
Bundles are written to a temporary folder, fsynced and renamed into place in one step, so a
process killed mid-write never leaves a half bundle under its final name.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from frugalml import __version__
from frugalml.errors import BundleError
from frugalml.hashing import sha256_file
from frugalml.processes import pid_alive

MANIFEST = "bundle.json"
TEXT_TASK, IMAGE_TASK = "text-classification", "image-classification"  # what a bundle classifies
TEMP_PREFIX = ".partial-"


@dataclass
class Bundle:
    id: str
    name: str
    labels: list[str]
    base_model: str
    method: str
    format: str = "torch"  # torch | onnx
    precision: str = "fp32"
    task: str = TEXT_TASK
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    frugalml_version: str = __version__
    path: Path | None = field(default=None, compare=False)

    def manifest(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        return data

    @property
    def size_bytes(self) -> int:
        return sum(int(f["bytes"]) for f in self.files.values())


def new_bundle_id() -> str:
    return "b" + uuid.uuid4().hex[:11]


def write_bundle(store: Path, bundle: Bundle, populate: Callable[[Path], None]) -> Bundle:
    """Create bundle `bundle.id` under `store`: `populate(folder)` writes the model files.

    Hashes every file, writes the manifest, fsyncs and atomically renames the folder into place.
    On any failure the temporary folder is removed and nothing appears under the final name.
    """
    store.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(store)
    final = store / bundle.id
    if final.exists():
        raise BundleError(f"bundle {bundle.id} already exists at {final}")
    temp = store / f"{TEMP_PREFIX}{bundle.id}-{os.getpid()}"
    temp.mkdir()
    try:
        populate(temp)
        bundle.files = {
            str(p.relative_to(temp)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(temp.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        bundle.created_at = bundle.created_at or datetime.now(UTC).isoformat(timespec="seconds")
        (temp / MANIFEST).write_text(json.dumps(bundle.manifest(), indent=2) + "\n")
        _fsync_tree(temp)
        os.rename(temp, final)
        fsync_dir(store)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    bundle.path = final
    return bundle


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read a bundle's manifest; with `verify`, check every file's size and sha256."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path}: not a frugalml bundle (no {MANIFEST})")
    try:
        data = json.loads(manifest_path.read_text())
        bundle = Bundle(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise BundleError(f"{path}: {MANIFEST} is malformed ({exc})") from None
    bundle.path = path
    if verify:
        verify_files(bundle)
    return bundle


def verify_files(bundle: Bundle) -> None:
    """Refuse a bundle whose folder holds unlisted files, or whose listed files are missing or changed."""
    assert bundle.path is not None
    require_only_listed_files(bundle)
    for name, meta in bundle.files.items():
        file = bundle.path / name
        if not file.is_file():
            raise BundleError(f"bundle {bundle.id} is incomplete: {name} is missing")
        if file.stat().st_size != meta["bytes"]:
            raise BundleError(
                f"bundle {bundle.id} is corrupt: {name} has {file.stat().st_size} bytes, "
                f"expected {meta['bytes']} (truncated or modified)"
            )
        if sha256_file(file) != meta["sha256"]:
            raise BundleError(f"bundle {bundle.id} is corrupt: {name} does not match its sha256 (modified)")


def unlisted_files(bundle: Bundle) -> list[str]:
    """Entries of the bundle's folder that its manifest does not list (the manifest aside).

    Every entry but a real folder counts: a file, a link (to a file or a folder), anything else.
    """
    assert bundle.path is not None
    found = (
        str(entry.relative_to(bundle.path))
        for entry in bundle.path.rglob("*")
        if entry.is_symlink() or not entry.is_dir()
    )
    return sorted(name for name in found if name != MANIFEST and name not in bundle.files)


def require_only_listed_files(bundle: Bundle) -> None:
    """The hashes cover only listed files, and loaders pick files up by name: a folder holding any
    other file is refused, so nothing unverified is ever read."""
    extra = unlisted_files(bundle)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise BundleError(
            f"bundle {bundle.id} holds files its manifest does not list: {shown} "
            "(frugalml reads only listed, hashed files; remove them or rebuild the bundle)"
        )


def stale_partials(store: Path) -> list[Path]:
    """Temporary folders left by writers that died (their pid no longer runs)."""
    stale = []
    for temp in sorted(store.glob(f"{TEMP_PREFIX}*")):
        pid = temp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not pid_alive(int(pid)):
            stale.append(temp)
    return stale


def remove_stale_partials(store: Path) -> None:
    for temp in stale_partials(store):
        shutil.rmtree(temp, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new entry in `folder` durable, not only the files' contents."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
