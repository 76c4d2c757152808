"""Deterministic stratified splits."""

from __future__ import annotations

from collections import Counter
from typing import TypeVar

import numpy as np
from sklearn.model_selection import train_test_split

from frugalml.data.dataset import Dataset, LabelledRows
from frugalml.errors import DataError

SOURCE_COLUMN, AUTO = "source", "auto"  # how `frugalml label auto` marks machine labels
Rows = TypeVar("Rows", bound=LabelledRows)  # any dataset kind: texts, images


def stratified_split(dataset: Rows, fraction: float, seed: int = 0) -> tuple[Rows, Rows]:
    """Split off `fraction` of the rows, keeping class proportions where every class allows it.

    Classes with a single example cannot be stratified; they stay on the first side. The same
    data and seed always give the same split.
    """
    keep, held = _stratified_indices(dataset.require_labels(), fraction, seed)
    return dataset.subset(keep.tolist()), dataset.subset(held.tolist())


def validation_split(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Fit and validation parts for tuning: `stratified_split`, except that rows whose `source`
    column says "auto" (labels from `frugalml label auto`) never validate.

    Accepted auto-labels are the rows the labelling model was surest of, so a validation split of
    them would score any model by its agreement with that one, and favour the frozen encoder it
    was built on. Human rows judge fairly; `fraction` of them are held out, and every
    auto-labelled row trains.
    """
    sources = dataset.extra.get(SOURCE_COLUMN)
    human = np.array([i for i, s in enumerate(sources or []) if s != AUTO])
    if sources is None or len(human) == len(dataset) or len(human) < 2:
        return stratified_split(dataset, fraction, seed)
    labels = dataset.require_labels()
    _, held = _stratified_indices([labels[i] for i in human], fraction, seed)
    held = human[held]
    keep = np.setdiff1d(np.arange(len(dataset)), held)
    return dataset.subset(keep.tolist()), dataset.subset(held.tolist())


def _stratified_indices(labels: list[str], fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    counts = Counter(labels)
    indices = np.arange(len(labels))
    singles = np.array([counts[y] < 2 for y in labels])
    pool = indices[~singles]
    if len(pool) < 2:
        raise DataError(
            f"cannot hold out rows from {len(labels)} labelled rows: every class has a single row "
            "(give some class at least two)"
        )
    n_held = min(max(1, round(fraction * len(labels))), len(pool) - 1)  # single rows stay in training
    n_classes = len({labels[i] for i in pool})
    # A stratified hold-out needs at least one row per class on each side.
    stratify = [labels[i] for i in pool] if n_classes <= n_held <= len(pool) - n_classes else None
    keep, held = train_test_split(pool, test_size=n_held, random_state=seed, stratify=stratify)
    return np.sort(np.concatenate([keep, indices[singles]])), np.sort(held)
