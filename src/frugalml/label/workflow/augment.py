"""`label augment`: the rows plus synthetic variants of each text (label.augment makes them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from frugalml.data import Dataset, load_dataset
from frugalml.data.frames import check_outputs, write_frame
from frugalml.errors import DataError
from frugalml.label.augment import augment_texts
from frugalml.label.config import AugmentConfig
from frugalml.label.workflow.rows import Columns


@dataclass
class AugmentResult:
    rows: int  # originals and synthetic rows
    original: int
    synthetic: int
    out: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def augment_dataset(data: Dataset, config: AugmentConfig) -> pd.DataFrame:
    """The original rows plus at most `per_row` synthetic variants of each, marked `synthetic`."""
    variants = augment_texts(data.texts, config.per_row, config.operations, config.seed)
    original = data.to_frame()
    original["synthetic"] = False
    original["origin_id"] = data.ids
    taken = set(data.ids)
    made = []
    for row, texts in enumerate(variants):
        for k, text in enumerate(texts, 1):
            new_id = f"{data.ids[row]}-aug{k}"
            if new_id in taken:
                raise DataError(f"{data.source}: id {new_id!r} already exists; cannot name synthetic rows")
            entry = {"id": new_id, "text": text, "synthetic": True, "origin_id": data.ids[row]}
            if data.labels is not None:
                entry["label"] = data.labels[row]
            made.append(entry)
    return pd.concat([original, pd.DataFrame(made, columns=list(original.columns))], ignore_index=True)


def augment_files(
    data_path: str | Path, *, out: str | Path, config: AugmentConfig, columns: Columns | None = None
) -> AugmentResult:
    """Augment a data file (labelled or not) and write the result."""
    check_outputs([data_path], [out])
    data = load_dataset(data_path, **(columns or {}), require_labels=False)
    frame = augment_dataset(data, config)
    write_frame(frame, out)
    return AugmentResult(len(frame), len(data), int(frame["synthetic"].sum()), str(out))
