"""Class weights that make every class count the same in total (scikit-learn's "balanced"), and
when a class weighting mode applies them."""

from __future__ import annotations

import numpy as np

SKEWED = 1.5  # class_weight "auto" weighs classes when the largest is this many times the smallest


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Each class's weight for integer labels `y`: rows / (classes present x rows of the class);
    0 for a class with no rows."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = np.count_nonzero(counts)
    return np.divide(len(y), present * counts, out=np.zeros_like(counts), where=counts > 0)


def class_weights(labels: list[str], names: list[str], mode: str | None) -> np.ndarray | None:
    """Per-class loss weights (mean 1 over the rows) or None for none: `mode` balanced always,
    auto when the classes are skewed, None never."""
    counts = np.array([labels.count(name) for name in names])
    if mode is None or (mode == "auto" and counts.max() < SKEWED * counts.min()):
        return None
    index = {name: i for i, name in enumerate(names)}
    return balanced_class_weights(np.array([index[label] for label in labels]), len(names))
