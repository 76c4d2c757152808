"""Read CSV, JSONL, Parquet files and Hugging Face `datasets` folders into a Dataset."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, overload

import pandas as pd

from frugalml.data.dataset import Dataset
from frugalml.data.split import AUTO, SOURCE_COLUMN
from frugalml.errors import DataError
from frugalml.hashing import sha256_path

TEXT_COLUMNS = ("text", "sentence", "query", "utterance", "content", "review", "document")
LABEL_COLUMNS = ("label", "labels", "category", "intent", "class", "target")
ID_COLUMNS = ("id", "uid", "example_id", "idx")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def load_dataset(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
    require_labels: bool = True,
) -> Dataset:
    """Load a dataset, auto-detecting the text, label and id columns by common names.

    Raises DataError with a one-line reason for any file that cannot serve as a dataset.
    """
    path = Path(path)
    frame = _read_rows(path)
    digest = sha256_path(path)
    text_col = _pick_column(frame, text_column, TEXT_COLUMNS, "text", path, required=True)
    label_col = _pick_column(frame, label_column, LABEL_COLUMNS, "label", path, require_labels)
    return _dataset(path, digest, frame, text_col, label_col, id_column)


def load_pool(
    path: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    id_column: str | None = None,
) -> tuple[Dataset, Dataset | None]:
    """A pool's rows to label, and the rows it already has human labels for (None when none).

    The label column is `label_column` when the pool has one of that name (none when it has
    not), else one found by name. It may be partly filled: a row with a label counts as labelled
    unless its `source` says "auto" (an earlier `frugalml label auto` run's guess, made again).
    """
    path = Path(path)
    frame = _read_rows(path)
    digest = sha256_path(path)
    text_col = _pick_column(frame, text_column, TEXT_COLUMNS, "text", path, required=True)
    others = frame.drop(columns=text_col)
    label_col = (
        _pick_column(others, None, LABEL_COLUMNS, "label", path, required=False)
        if label_column is None
        else label_column
        if label_column in others.columns
        else None
    )
    if label_col is None:
        return _dataset(path, digest, frame, text_col, None, id_column), None
    given = frame[label_col]
    machine = frame[SOURCE_COLUMN].eq(AUTO) if SOURCE_COLUMN in frame else pd.Series(False, frame.index)
    known = given.notna() & given.astype(str).str.strip().ne("") & ~machine
    if known.all():
        raise DataError(f"{path}: every row already has a label in column {label_col!r}; nothing to label")
    rows = _dataset(
        path,
        digest,
        frame[~known].drop(columns=label_col),
        text_col,
        None,
        id_column,
    )
    if not known.any():
        return rows, None
    labelled = _dataset(path, digest, frame[known], text_col, label_col, id_column)
    clash = sorted(set(rows.ids) & set(labelled.ids))
    if clash:
        raise DataError(f"{path}: duplicate id(s) {clash[:5]}")
    return rows, labelled


def _read_rows(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    frame = _read_frame(path)
    if frame.empty:
        raise DataError(f"{path}: contains no rows")
    # Row numbers are the file's, also in a part of it (ids, and rows named in errors).
    return frame.reset_index(drop=True)


def _dataset(
    path: Path,
    digest: str,
    frame: pd.DataFrame,
    text_col: str,
    label_col: str | None,
    id_column: str | None,
) -> Dataset:
    id_col = _pick_column(frame, id_column, ID_COLUMNS, "id", path, required=False)
    texts = frame[text_col]
    blank = texts.isna() | (texts.astype(str).str.strip() == "")
    if blank.any():
        raise DataError(f"{path}: empty text in row(s) {_rows(blank)}")
    labels = None
    if label_col is not None:
        missing = frame[label_col].isna()
        if missing.any():
            raise DataError(f"{path}: missing label in row(s) {_rows(missing)}")
        labels = [_label_str(v) for v in frame[label_col]]
    if id_col is not None:
        empty = frame[id_col].isna() | (frame[id_col].astype(str).str.strip() == "")
        if empty.any():
            raise DataError(f"{path}: empty id in row(s) {_rows(empty)} of column {id_col!r}")
        ids = [str(v) for v in frame[id_col]]
        duplicated = pd.Series(ids, index=frame.index).duplicated()
        if duplicated.any():
            raise DataError(f"{path}: duplicate id(s) in column {id_col!r}, row(s) {_rows(duplicated)}")
    else:
        ids = [str(i) for i in frame.index]
    used = {text_col, label_col, id_col}
    extra = {str(c): frame[c].tolist() for c in frame.columns if c not in used}
    return Dataset(
        texts=texts.astype(str).tolist(),
        labels=labels,
        ids=ids,
        source=str(path),
        sha256=digest,
        extra=extra,
        numbered=id_col is None,
        label_column=None if label_col is None else str(label_col),
    )


def _read_frame(path: Path) -> pd.DataFrame:
    if path.is_dir():
        return _read_hf_folder(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"{path}: unknown format {path.suffix or '(no suffix)'!r}; use one of {known}")
    try:
        if kind in ("csv", "tsv"):
            # As written: ids "007" stay "007", and cells such as "NA", "None", "null" or "true"
            # stay themselves (pandas alone reads numbers, booleans and missing values); a CSV has
            # no types to infer, and only an empty cell is missing.
            # A TSV cell holds no tabs or newlines, so it needs no quotes: a quote mark is text.
            tsv = kind == "tsv"
            return pd.read_csv(
                path,
                sep="\t" if tsv else ",",
                quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL,
                encoding="utf-8-sig",
                dtype=str,
                keep_default_na=False,
                na_values=[""],
            )
        if kind == "jsonl":
            return pd.read_json(path, lines=not _is_json_array(path), encoding="utf-8-sig", dtype=False)
        return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 text (bad byte at offset {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: contains no rows") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {kind}: {reason}") from None


def _is_json_array(path: Path) -> bool:
    """A `.json` file may hold one array of records instead of one record per line."""
    with path.open("rb") as handle:
        return handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def _read_hf_folder(path: Path) -> pd.DataFrame:
    import datasets  # imported lazily: it is slow to import and only this format needs it

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: not a Hugging Face datasets folder (save_to_disk output)") from None
    if isinstance(loaded, datasets.DatasetDict):
        # Picking one of several splits for the user would score eval on training rows unseen.
        if len(loaded) != 1:
            first = sorted(loaded)[0]
            raise DataError(
                f"{path}: holds the splits {sorted(loaded)}; point at one split's folder, "
                f"such as {path / first}"
            )
        (loaded,) = loaded.values()
    frame = loaded.to_pandas()
    for column, feature in loaded.features.items():
        if isinstance(feature, datasets.ClassLabel):  # class names, not integer codes; -1: none
            frame[column] = [None if int(v) < 0 else feature.int2str(int(v)) for v in frame[column]]
    return frame


@overload
def _pick_column(
    frame: pd.DataFrame,
    chosen: str | None,
    candidates: tuple[str, ...],
    role: str,
    path: Path,
    required: Literal[True],
) -> str: ...


@overload
def _pick_column(
    frame: pd.DataFrame,
    chosen: str | None,
    candidates: tuple[str, ...],
    role: str,
    path: Path,
    required: bool,
) -> str | None: ...


def _pick_column(
    frame: pd.DataFrame,
    chosen: str | None,
    candidates: tuple[str, ...],
    role: str,
    path: Path,
    required: bool,
) -> str | None:
    if chosen is not None:
        if chosen not in frame.columns:
            raise DataError(
                f"{path}: no {role} column {chosen!r}; columns are {list(map(str, frame.columns))}"
            )
        return chosen
    lowered = {str(c).lower(): c for c in frame.columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    if required:
        raise DataError(
            f"{path}: no {role} column found (looked for {', '.join(candidates)}); "
            f"columns are {list(map(str, frame.columns))}; name it with --{role}-column"
        )
    return None


def _label_str(value: object) -> str:
    # 3.0 read from a float column is the label "3", not "3.0".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rows(mask: pd.Series) -> str:
    rows = [str(i) for i in mask[mask].index[:5]]
    # Counted as row-number ids are: from 0, over data rows (a CSV's header is no row).
    return ", ".join(rows) + (" ..." if int(mask.sum()) > 5 else "") + " (data rows from 0)"


@contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """A temporary path to write to; it replaces `path` when the block ends without an error, so
    a crash leaves the old file or none, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield temp
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_target(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return Path(path)


def read_table(path: str | Path) -> pd.DataFrame:
    """Every row of a data file or Hugging Face folder, as a dataset reads it (no column checks)."""
    return _read_rows(Path(path))
