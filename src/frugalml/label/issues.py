"""Label issues: likely wrong labels, near-duplicates that disagree, and outliers.

Wrong labels: cleanlab's `find_label_issues` on out-of-fold probabilities from the linear probe.
`filter_by="low_self_confidence"` takes cleanlab's estimate of how many labels are wrong and flags
that many rows with the lowest probability of their given label; on BANKING77 with 10 % of labels
flipped it reaches F1 0.91, against 0.80 for cleanlab's default `prune_by_noise_rate` on the same
probabilities (bench/labelling.py), because the self-confidence ranking is sharper than the
per-class pruning. Outliers follow cleanlab Datalab's rule on k-nearest-neighbour distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from scipy.special import softmax

from frugalml.label.neighbours import Neighbours
from frugalml.label.probe import choose_c, out_of_fold_logits

OUTLIER_IQR = 1 / 0.37037 - 1  # Datalab's default: outlier beyond Q3 + 1.7 x IQR of kNN distance


@dataclass
class LabelIssues:
    rows: np.ndarray  # flagged row indices, most likely wrong first
    suggested: np.ndarray  # per row of the data: the out-of-fold model's class
    quality: np.ndarray  # per row: probability of the given label (low = likely wrong)
    pred_probs: np.ndarray  # out-of-fold probabilities, (n, n_classes)
    c: float


def find_issues(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    folds: int = 5,
    seed: int = 0,
    c: float | None = None,
    filter_by: str = "low_self_confidence",
) -> LabelIssues:
    """Rows whose given label `y` is likely wrong, from k-fold probes on embeddings `x`."""
    c = c if c is not None else choose_c(x, y, n_classes, seed)
    pred_probs = softmax(out_of_fold_logits(x, y, n_classes, c, folds, seed), axis=1)
    rows = find_label_issues(y, pred_probs, filter_by=filter_by, return_indices_ranked_by="self_confidence")
    return LabelIssues(
        rows=np.asarray(rows, dtype=int),
        suggested=pred_probs.argmax(axis=1),
        quality=get_label_quality_scores(y, pred_probs, method="self_confidence"),
        pred_probs=pred_probs,
        c=c,
    )


def conflicting_duplicates(
    near: Neighbours, y: np.ndarray, threshold: float = 0.95
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity), i < j, at least `threshold` cosine-similar but labelled differently."""
    found: dict[tuple[int, int], float] = {}
    rows, cols = np.nonzero(1.0 - near.distance >= threshold)
    for i, col in zip(rows.tolist(), cols.tolist(), strict=True):
        j = int(near.index[i, col])
        if y[i] != y[j]:
            found[(min(i, j), max(i, j))] = 1.0 - float(near.distance[i, col])
    return sorted(((i, j, s) for (i, j), s in found.items()), key=lambda t: (-t[2], t[0], t[1]))


def outliers(near: Neighbours) -> tuple[np.ndarray, np.ndarray]:
    """(flagged rows, most atypical first; mean kNN cosine distance of every row)."""
    mean_distance = near.distance.mean(axis=1)
    q1, q3 = np.percentile(mean_distance, [25, 75])
    flagged = np.flatnonzero(mean_distance > q3 + OUTLIER_IQR * (q3 - q1))
    return flagged[np.argsort(-mean_distance[flagged], kind="stable")], mean_distance
