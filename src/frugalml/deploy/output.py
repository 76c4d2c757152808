"""Writing a deployment folder: all of it or nothing, and what was written."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from frugalml.errors import FrugalError


@dataclass
class Written:
    """A deployment folder: its files (relative paths, bundle files left out), the image it builds or
    runs, and the command to run next."""

    output: Path
    files: list[str]
    image: str
    next_step: str

    def to_json(self) -> dict:
        return {"output": str(self.output), "files": self.files, "image": self.image, "next": self.next_step}


def write_folder(output: str | Path, populate: Callable[[Path], None]) -> Path:
    """Create `output` (absent or an empty folder) with `populate(folder)`: written beside it and
    renamed into place, so a failure leaves no half-written folder."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FrugalError(f"{output} exists and is not an empty folder; give a new --output")
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_name(f".{output.name}.{os.getpid()}.partial")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        populate(temp)
        if output.exists():
            output.rmdir()
        temp.rename(output)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return output


class _PlainDumper(yaml.SafeDumper):
    """Writes a mapping used twice (labels) out twice, not as a YAML anchor and alias."""

    def ignore_aliases(self, data) -> bool:
        return True


def yaml_documents(documents: list[dict]) -> str:
    return yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)
