"""Deterministic stratified splits."""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.model_selection import train_test_split

from frugalml.data.dataset import Dataset


def stratified_split(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split off `fraction` of the rows, keeping class proportions where every class allows it.

    Classes with a single example cannot be stratified; they stay on the first side. The same
    data and seed always give the same split.
    """
    labels = dataset.require_labels()
    counts = Counter(labels)
    indices = np.arange(len(dataset))
    singles = np.array([counts[y] < 2 for y in labels])
    pool = indices[~singles]
    n_held = max(1, round(fraction * len(dataset)))
    n_classes = len({labels[i] for i in pool})
    # A stratified hold-out needs at least one row per class on each side.
    stratify = [labels[i] for i in pool] if n_classes <= n_held <= len(pool) - n_classes else None
    keep, held = train_test_split(pool, test_size=n_held, random_state=seed, stratify=stratify)
    keep = np.sort(np.concatenate([keep, indices[singles]]))
    return dataset.subset(keep.tolist()), dataset.subset(np.sort(held).tolist())
