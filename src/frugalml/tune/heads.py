"""The classification head that ships: multinomial logistic regression on standardized encoder
features, folded into one Linear layer, with its regularization chosen on a validation split."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from frugalml.models import FrugalTextClassifier
from frugalml.tune.balance import balanced_class_weights

HEAD_C_GRID = (0.01, 0.03, 0.1, 0.3)  # for standardized features; strongest first

Head = tuple[np.ndarray, np.ndarray]  # weight (classes x features), bias (classes)


def val_scores(logits: np.ndarray, y: np.ndarray, balanced: bool = False) -> tuple[float, float]:
    """Accuracy and mean log loss; `balanced`: every class of `y` counts the same."""
    log_probs = torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()
    weights = row_weights(y, balanced)
    accuracy = np.average(logits.argmax(1) == y, weights=weights)
    return float(accuracy), float(np.average(-log_probs[np.arange(len(y)), y], weights=weights))


def row_weights(y: np.ndarray, balanced: bool) -> np.ndarray:
    """Each row's weight: 1, or with `balanced` scikit-learn's "balanced" weights, rows / (classes
    present x rows of the row's class), so that every class counts the same in total."""
    if not balanced:
        return np.ones(len(y))
    return balanced_class_weights(y, int(y.max()) + 1)[y]


def choose_c(
    fit_x,
    fit_y,
    val_x,
    val_y,
    fixed: float | None,
    n_classes: int,
    balanced: bool = False,
    start: Head | None = None,
) -> tuple[float, Head]:
    """The regularization strength with the best validation accuracy, and its head.

    One estimator walks the grid from strong to weak regularization, warm-starting each fit
    from the previous solution, which costs far fewer iterations than fitting each C afresh.
    `start`: a Linear head (all classes) the first fit starts from (`tune --from`).
    """
    scaler = _Standardizer(fit_x)
    clf = LogisticRegression(max_iter=3000, warm_start=True)
    present = np.unique(fit_y)
    if start is not None and len(present) > 2:  # as a head on standardized features
        clf.coef_ = start[0][present] * scaler.std
        clf.intercept_ = start[1][present] + start[0][present] @ scaler.mean
    best = None
    for c in (fixed,) if fixed is not None else HEAD_C_GRID:
        clf.set_params(C=c).fit(scaler(fit_x), fit_y, sample_weight=row_weights(fit_y, balanced))
        head = _as_linear(clf, scaler, n_classes)
        acc, _ = val_scores(val_x @ head[0].T + head[1], val_y, balanced)
        if best is None or acc > best[0]:  # ties keep the stronger regularization
            best = (acc, c, head)
    assert best is not None  # the grid is never empty
    return best[1], best[2]


def fit_head(x: np.ndarray, y: np.ndarray, c: float, n_classes: int, balanced: bool = False) -> Head:
    """Multinomial logistic regression on standardized features, folded into one Linear layer.

    Standardizing first makes one C grid fit any encoder: sentence vectors often share a large
    common direction that leaves the class signal in small coordinates.
    """
    scaler = _Standardizer(x)
    clf = LogisticRegression(C=c, max_iter=3000).fit(scaler(x), y, sample_weight=row_weights(y, balanced))
    return _as_linear(clf, scaler, n_classes)


class _Standardizer:
    def __init__(self, x: np.ndarray):
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


def _as_linear(clf: LogisticRegression, scaler: _Standardizer, n_classes: int) -> Head:
    """Weights and bias of one Linear layer equal to scaler + logistic regression."""
    if len(clf.classes_) == 2:  # sklearn keeps one row for two classes
        coef = np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        intercept = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    else:
        coef, intercept = clf.coef_, clf.intercept_
    weight = np.zeros((n_classes, coef.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -1e4, dtype=np.float32)  # classes absent from training: never predicted
    weight[clf.classes_] = coef / scaler.std
    bias[clf.classes_] = intercept - (coef / scaler.std) @ scaler.mean
    return weight, bias


def set_head(model: FrugalTextClassifier, head: Head) -> None:
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(head[0]))
        model.classifier.bias.copy_(torch.from_numpy(head[1]))
