"""Drift scores: plain functions over arrays comparing live values with a reference.

PSI (population stability index) compares binned shares: sum over bins of
(live - reference) x ln(live / reference). Common reading: below 0.1 stable, 0.1 to 0.25 a
moderate shift, above 0.25 a significant one. KS is the two-sample Kolmogorov-Smirnov statistic
(scipy.stats.ks_2samp): the largest gap between the two empirical distribution functions, from 0
(same) to 1 (disjoint); it needs no bins but applies to numeric values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

EPSILON = 1e-4  # the share an empty bin counts as, so that ln(live / reference) stays finite


@dataclass(frozen=True)
class Score:
    """One feature's drift: PSI, and KS for a numeric feature (None for a categorical one)."""

    psi: float
    ks: float | None


def quantile_edges(values: np.ndarray, *, bins: int = 10) -> np.ndarray:
    """Interior bin edges at the quantiles of `values` (ties merged): up to `bins` bins, each
    holding about as many reference values, the first and last open-ended."""
    if bins < 2:
        raise ValueError(f"bins must be at least 2, not {bins}")
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("no values to take quantiles of")
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: bin i holds edges[i-1] <= value < edges[i]; below the first edge is bin 0,
    from the last edge on the last bin (len(edges) + 1 bins)."""
    index = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values, dtype=float), side="right")
    return np.bincount(index, minlength=len(edges) + 1)


def category_counts(values: np.ndarray, *, categories: int) -> np.ndarray:
    """Counts of the integer categories 0 .. categories-1 (a predicted class index, say)."""
    values = np.asarray(values, dtype=int)
    if values.size and (values.min() < 0 or values.max() >= categories):
        raise ValueError(f"category outside 0..{categories - 1}")
    return np.bincount(values, minlength=categories)


def shares(counts: np.ndarray, *, epsilon: float = EPSILON) -> np.ndarray:
    """Counts as shares of their total, each at least `epsilon`."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total <= 0:
        raise ValueError("no counts")
    return np.maximum(counts / total, epsilon)


def psi(reference_counts: np.ndarray, live_counts: np.ndarray, *, epsilon: float = EPSILON) -> float:
    """Population stability index between two histograms over the same bins (counts or shares).

    Zero for equal shares, growing with the shift; symmetric in its two arguments. An empty bin
    counts as a share of `epsilon`, so a bin only one side fills scores high but finite.
    """
    reference_counts, live_counts = np.asarray(reference_counts), np.asarray(live_counts)
    if reference_counts.shape != live_counts.shape:
        raise ValueError(f"bins differ: {reference_counts.shape} and {live_counts.shape}")
    ref, live = shares(reference_counts, epsilon=epsilon), shares(live_counts, epsilon=epsilon)
    return float(np.sum((live - ref) * np.log(live / ref)))


def ks(reference_values: np.ndarray, live_values: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic (0: same distribution, 1: disjoint)."""
    if len(reference_values) == 0 or len(live_values) == 0:
        raise ValueError("KS needs values on both sides")
    # The statistic only: the asymptotic p-value is the cheap one to skip past.
    return float(stats.ks_2samp(reference_values, live_values, method="asymp").statistic)


def drift_scores(
    reference: Mapping[str, Mapping], live: Mapping[str, np.ndarray], *, epsilon: float = EPSILON
) -> dict[str, Score]:
    """PSI and KS per feature: `reference` maps a feature to its stored summary (a categorical
    one: `counts`; a numeric one: `edges`, `counts` and a `sample` of values), `live` to its
    live values. KS is None for a categorical feature. Features missing from `live` are skipped."""
    scores: dict[str, Score] = {}
    for name, summary in reference.items():
        if name not in live:
            continue
        values = np.asarray(live[name])
        if summary["kind"] == "categorical":
            counts = category_counts(values, categories=len(summary["counts"]))
            scores[name] = Score(psi(summary["counts"], counts, epsilon=epsilon), None)
        else:
            counts = histogram(values, np.asarray(summary["edges"]))
            scores[name] = Score(
                psi(summary["counts"], counts, epsilon=epsilon), ks(np.asarray(summary["sample"]), values)
            )
    return scores
