"""Nearest neighbours among sentence embeddings, and smoothing the embeddings over them.

Smoothing is akin to one hop of graph propagation (Wu et al. 2019, "Simplifying Graph
Convolutional Networks", which propagates over a normalised adjacency): each vector moves towards
the mean of its nearest rows, so texts that say the same
thing in different words end up closer, and a probe trained on a few labels per class labels a
pool better (bench/labelling.py, docs/labelling.md). It is transductive: a row's vector depends
on the other rows smoothed with it. Labelled and pool rows are smoothed alike and no label is
used, so a held-out labelled row is as unseen as a pool row and cross-validated precision stays
an honest estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

SMOOTHING_WEIGHT = 0.5  # of the neighbours' mean against the row itself


@dataclass
class Neighbours:
    index: np.ndarray  # (n, k) nearest other rows
    distance: np.ndarray  # (n, k) their cosine distances, ascending


def neighbours(x: np.ndarray, k: int = 10) -> Neighbours:
    """Each row's `k` nearest other rows by cosine distance (fewer when there are not as many).
    Brute force: its work grows with the square of the rows."""
    k = min(k, len(x) - 1)
    distance, index = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(x).kneighbors(x)
    # Drop each row itself (distance 0); an exact duplicate may take its place in column 0.
    own = index == np.arange(len(x))[:, None]
    keep = np.where(own.any(axis=1, keepdims=True), ~own, np.arange(k + 1) < k)
    return Neighbours(index[keep].reshape(len(x), k), distance[keep].reshape(len(x), k))


def smooth(x: np.ndarray, k: int, weight: float = SMOOTHING_WEIGHT) -> np.ndarray:
    """Each row plus `weight` times the mean of its `k` nearest other rows, scaled to unit length;
    `x` itself when `k` is 0 or there is one row."""
    if k < 0:
        raise ValueError(f"neighbours must be 0 or more, got {k}")
    if k == 0 or len(x) < 2:
        return x
    index = neighbours(x, k).index
    # Column by column: x[index] at once would hold k copies of the embeddings.
    centre = sum(x[index[:, j]] for j in range(index.shape[1])) / index.shape[1]
    mixed = x + weight * centre
    return (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(x.dtype)
