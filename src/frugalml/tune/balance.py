"""Class weights that make every class count the same in total (scikit-learn's "balanced")."""

from __future__ import annotations

import numpy as np


def balanced_class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Each class's weight for integer labels `y`: rows / (classes present x rows of the class);
    0 for a class with no rows."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = np.count_nonzero(counts)
    return np.divide(len(y), present * counts, out=np.zeros_like(counts), where=counts > 0)
