"""Rows across files: ids that name one row, texts already labelled, class indices, folds.

The workflows share these: a labelled file and a pool are told apart by id (or by a prefix where
a file has only row numbers), and a text already labelled is never labelled or suggested again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, overload

import numpy as np
import pandas as pd

from frugalml.data import Dataset
from frugalml.data.dataset import LabelledRows
from frugalml.data.images import ImageDataset
from frugalml.data.split import AUTO, SOURCE_COLUMN
from frugalml.errors import DataError
from frugalml.label.probe import usable_folds

Columns = dict[str, Any]  # load_dataset's column arguments: text_column, label_column, id_column
GUESS_COLUMNS = ("suggested_label", "confidence", SOURCE_COLUMN)  # what label auto writes beside a label
WRITTEN_COLUMNS = ("label", *GUESS_COLUMNS)


def has_row_number_ids(dataset: Dataset) -> bool:
    """True when the data had no id column (the loader then numbers the rows 0, 1, 2 ...), or
    its ids are just that: a saved index or an `idx` column is no id to match rows by."""
    return dataset.numbered or dataset.ids == [str(i) for i in range(len(dataset))]


def row_ref(dataset: Dataset | ImageDataset, row: int) -> str | int:
    """How reports name a row: its id when the data has an id column (an image's id is its path,
    or split/index in a .npz), else its 0-based index."""
    if isinstance(dataset, ImageDataset):
        return dataset.ids[row]
    return row if has_row_number_ids(dataset) else dataset.ids[row]


def text_key(text: str) -> str:
    return " ".join(text.casefold().split())


def unseen_rows(rows: Dataset, texts: Sequence[str]) -> list[int]:
    """Indices of the rows whose text is not among `texts` (compared as `text_key` does)."""
    seen = {text_key(t) for t in texts}
    return [i for i, text in enumerate(rows.texts) if text_key(text) not in seen]


def class_index(dataset: LabelledRows, labels: list[str] | None) -> tuple[list[str], np.ndarray]:
    """The label set (sorted) and each row's class index; refuses labels outside `labels`."""
    given = dataset.require_labels()
    if labels is not None:
        unknown = sorted(set(given) - set(labels))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise DataError(f"{dataset.source}: label(s) {shown} are not in the label set {labels}")
    names = sorted(set(labels or given))
    index = {label: i for i, label in enumerate(names)}
    return names, np.array([index[label] for label in given])


def folds_used(y: np.ndarray, asked: int) -> tuple[int, list[str]]:
    """The cross-validation folds the labelled rows allow, and a note when fewer than asked."""
    used = usable_folds(y, asked)
    if used == asked:
        return used, []
    return used, [f"cross-validation used {used} folds, not {asked}: the labelled rows allow no more"]


def bare(rows: Dataset) -> Dataset:
    """The rows without the columns label auto writes beside a label: guess, confidence, source."""
    return replace(rows, extra={k: v for k, v in rows.extra.items() if k not in GUESS_COLUMNS})


def check_source_column(data: Dataset) -> None:
    # Empty cells are human rows, as tune's validation split reads them.
    values = {v for v in data.extra.get(SOURCE_COLUMN, []) if not pd.isna(v)} - {"human", AUTO, ""}
    if values:
        raise DataError(
            f"{data.source}: column {SOURCE_COLUMN!r} holds {sorted(map(str, values))[:3]}, but label auto "
            f"uses it to mark rows 'human' or '{AUTO}'; rename that column"
        )


def disjoint_ids(seed: Dataset, pool: Dataset) -> tuple[Dataset, Dataset]:
    overlap = set(seed.ids) & set(pool.ids)
    if not overlap:
        return seed, pool
    # Row numbers are not ids: files without an id column are told apart by a prefix.
    if has_row_number_ids(pool):
        return seed, _prefixed(pool, _free_prefix("pool", pool.ids, set(seed.ids)))
    if has_row_number_ids(seed):
        return _prefixed(seed, _free_prefix("seed", seed.ids, set(pool.ids))), pool
    shown = sorted(overlap)[:5]
    raise DataError(
        f"{pool.source}: {len(overlap)} id(s) also appear in the labelled set {seed.source}, e.g. "
        f"{shown}; an id must name one row (remove labelled rows from the pool)"
    )


def _prefixed(dataset: Dataset, prefix: str) -> Dataset:
    return replace(dataset, ids=[prefix + i for i in dataset.ids])


def _free_prefix(name: str, ids: Sequence[str], avoid: set[str]) -> str:
    """`name-`, or `name2-` and so on where that would give an id in `avoid`."""
    for prefix in (f"{name}-", *(f"{name}{n}-" for n in range(2, 100))):
        if avoid.isdisjoint(prefix + i for i in ids):
            return prefix
    raise DataError(f"cannot give the rows of two files distinct ids with a prefix {name!r}")


@overload
def with_pool_labels(labelled: Dataset, pool: Dataset, known: Dataset | None) -> tuple[Dataset, Dataset]: ...


@overload
def with_pool_labels(
    labelled: Dataset | None, pool: Dataset, known: Dataset | None
) -> tuple[Dataset | None, Dataset]: ...


def with_pool_labels(
    labelled: Dataset | None, pool: Dataset, known: Dataset | None
) -> tuple[Dataset | None, Dataset]:
    """`labelled` plus the rows a pool file already has labels for (`load_pool`), and the pool's
    rows to label. A pool row whose text is in `labelled` is left out: the labelled file's label
    stands."""
    if known is None:
        return labelled, pool
    check_source_column(known)
    # A review queue's guess, its confidence and the source are not part of a human's label.
    known = bare(known)
    if labelled is None:
        return known, pool
    # Two files' row numbers side by side would collide: each gets its own prefix.
    if pool.numbered:
        prefix = _free_prefix("pool", pool.ids + known.ids, set(labelled.ids))
        pool, known = _prefixed(pool, prefix), _prefixed(known, prefix)
    if has_row_number_ids(labelled):
        taken = set(pool.ids) | set(known.ids)
        labelled = _prefixed(labelled, _free_prefix("seed", labelled.ids, taken))
    known = known.subset(unseen_rows(known, labelled.texts))
    labelled, known = disjoint_ids(labelled, known)
    source = f"{labelled.source} with the labelled rows of {known.source}"
    return replace(labelled.concat(known), source=source), pool
