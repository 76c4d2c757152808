"""Tables out: write a DataFrame as CSV, JSONL or Parquet atomically, and check output paths first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from frugalml.data.io import atomic_target
from frugalml.errors import FrugalError

FRAME_SUFFIXES = (".csv", ".jsonl", ".parquet")  # what write_frame writes


def write_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write CSV, JSONL or Parquet by suffix, atomically: a crash leaves the old file or none."""
    path = Path(path)
    suffix = path.suffix.lower()
    check_suffix(path, FRAME_SUFFIXES)
    with atomic_target(path) as temp:
        if suffix == ".csv":
            frame.map(_nested_as_json).to_csv(temp, index=False)
        elif suffix == ".jsonl":
            frame.to_json(temp, orient="records", lines=True, force_ascii=False)
        else:
            _one_type_per_column(frame).to_parquet(temp, index=False)
    return path


def check_outputs(
    inputs: Sequence[str | Path | None],
    outputs: Sequence[str | Path],
    suffixes: Sequence[str] | None = FRAME_SUFFIXES,
) -> None:
    """Refuse, before any work, to overwrite an input file, to write two outputs to one path, or
    to write a file type that is not in `suffixes` (None: any)."""
    for path in outputs:
        check_suffix(Path(path), suffixes)
    sources = {Path(p).resolve() for p in inputs if p}
    targets = [Path(p).resolve() for p in outputs]
    clash = [str(t) for t in targets if t in sources]
    if clash or len(set(targets)) < len(targets):
        raise FrugalError(
            f"output {clash[0] if clash else targets[0]} would overwrite an input or another output"
        )


def check_suffix(path: Path, suffixes: Sequence[str] | None) -> None:
    if suffixes and path.suffix.lower() not in suffixes:
        raise FrugalError(f"{path}: write {', '.join(suffixes[:-1])} or {suffixes[-1]}")


def json_cell(value: Any) -> Any:
    """JSON-safe cell: a missing value becomes null, numpy values plain Python, times ISO 8601."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays (a Parquet list column)
        value = value.tolist()
    if value is None or isinstance(value, str | bool | int | list | dict):
        return value
    if pd.isna(value):  # NaN, NaT, pd.NA
        return None
    if isinstance(value, float):
        return value
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _one_type_per_column(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet holds one type per column: a column of mixed values (say text cells of a CSV
    beside numbers of a JSONL) is written as text, and objects and lists as JSON text (pyarrow
    refuses a list of mixed types)."""
    frame = frame.copy()
    for name in frame.select_dtypes(include="object").columns:
        present = [v for v in frame[name] if not _missing(v)]
        nested = any(isinstance(v, dict | list | np.ndarray) for v in present)
        if nested or len({type(v) for v in present}) > 1:
            frame[name] = [None if _missing(v) else str(_nested_as_json(v)) for v in frame[name]]
    return frame


def _nested_as_json(value: object) -> object:
    """An object or list cell (JSONL, or Parquet's structs and arrays) as JSON text, which a CSV
    or text cell holds and reads back (Python's repr would not); any other value as it is."""
    if not isinstance(value, dict | list | np.ndarray):
        return value
    return json.dumps(value, ensure_ascii=False, default=json_cell)  # numpy inside


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)
