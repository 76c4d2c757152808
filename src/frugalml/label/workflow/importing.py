"""`label import`: a Label Studio export (label.labelstudio reads it) written as a labelled dataset."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from frugalml.data.frames import check_outputs, write_frame
from frugalml.label import labelstudio
from frugalml.label.config import ImportConfig


@dataclass
class ImportResult:
    rows: int
    skipped_unannotated: int
    labels: dict[str, int]  # rows per label
    out: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def import_export(export: str | Path, *, out: str | Path, config: ImportConfig) -> ImportResult:
    """Read a Label Studio export and write it as a labelled dataset file."""
    check_outputs([export], [out])
    dataset, skipped = labelstudio.read_export(export, config.labels)
    write_frame(dataset.to_frame(), out)
    return ImportResult(len(dataset), skipped, dataset.class_counts(), str(out))
