"""A linear probe on sentence embeddings, the classifier every labelling technique shares.

Standardized features + multinomial logistic regression: the same model as tune's `head` method,
so confidences found here carry over to the classifier that tune builds. Plain functions over
arrays, cleanlab style; classes are integer indices 0..n_classes-1.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from frugalml.errors import DataError, FrugalError

C_GRID = (0.01, 0.1, 1.0)
ABSENT = -1e4  # logit of a class the probe never saw: probability 0, no NaN


class LinearProbe:
    """Logistic regression on standardized embeddings that always answers for every class."""

    def __init__(self, n_classes: int, c: float = 0.1, max_iter: int = 300):
        self.n_classes = n_classes
        self.c = c
        self.max_iter = max_iter

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearProbe:
        self.only_ = int(y[0]) if len(np.unique(y)) == 1 else None
        if self.only_ is not None:  # a training fold of tiny data may hold one class: it is the answer
            return self
        # tol 1e-3: accuracy is flat beyond it and fits take a third of the time. One BLAS thread:
        # L-BFGS multiplies small matrices, and on a busy 2-core machine OpenBLAS's threads spin
        # against each other (measured: 12 s instead of 0.2 s for a 770-row fit).
        model = LogisticRegression(C=self.c, max_iter=self.max_iter, tol=1e-3)
        with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: the fit is still usable
            self.model_: Pipeline = make_pipeline(StandardScaler(), model).fit(x, y)
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        if self.only_ is not None:
            out = np.full((len(x), self.n_classes), ABSENT, dtype=np.float64)
            out[:, self.only_] = 0.0
            return out
        with threadpool_limits(1, user_api="blas"):
            raw = self.model_.decision_function(x)
        classes = self.model_.classes_
        if raw.ndim == 1:  # sklearn keeps one column for two classes
            raw = np.stack([-raw / 2, raw / 2], axis=1)
        out = np.full((len(x), self.n_classes), ABSENT, dtype=np.float64)
        out[:, classes] = raw
        return out

    def predict_proba(self, x: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        return softmax(self.logits(x) / temperature, axis=1)


def usable_folds(y: np.ndarray, folds: int) -> int:
    """The folds `folds_for` makes of `y`: `folds`, or fewer where the rows allow no more."""
    if folds < 2:
        raise FrugalError(f"folds must be 2 or more, got {folds}")
    # StratifiedKFold refuses more folds than the largest class has rows (2 labels per class: 2).
    largest = int(np.unique(y, return_counts=True)[1].max())
    if largest < 2:
        raise DataError(
            f"cross-validation needs a class with 2 or more labelled rows; all {len(y)} classes have one"
        )
    return max(2, min(folds, len(y) // 2, largest))


def folds_for(y: np.ndarray, folds: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds; classes smaller than `folds` simply miss from some training folds."""
    splitter = StratifiedKFold(usable_folds(y, folds), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members"
        yield from splitter.split(np.zeros(len(y)), y)


def out_of_fold_logits(
    x: np.ndarray, y: np.ndarray, n_classes: int, c: float, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Logits for every row from a probe that never saw that row (k-fold cross-fitting)."""
    out = np.empty((len(y), n_classes))
    for train, held in folds_for(y, folds, seed):
        out[held] = LinearProbe(n_classes, c).fit(x[train], y[train]).logits(x[held])
    return out


def choose_c(
    x: np.ndarray, y: np.ndarray, n_classes: int, seed: int = 0, grid: Sequence[float] = C_GRID
) -> float:
    """The regularization with the best held-out log-likelihood on one stratified fold.

    Log-likelihood, not accuracy: confidence is what thresholds and label-issue scores use, and on
    noisy labels it rightly favours the more regularized probe.
    """
    train, held = next(folds_for(y, 5, seed))
    scores = []
    for c in grid:
        logits = LinearProbe(n_classes, c).fit(x[train], y[train]).logits(x[held])
        scores.append(log_softmax(logits, axis=1)[np.arange(len(held)), y[held]].mean())
    return float(grid[int(np.argmax(scores))])


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017): one scalar that makes held-out confidences honest."""

    def nll(log_t: float) -> float:
        return -log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))
