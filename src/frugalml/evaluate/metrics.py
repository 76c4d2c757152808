"""Evaluation: accuracy, macro-F1, per-class scores, confusion matrix, latency."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score, roc_auc_score

from frugalml.data import Dataset
from frugalml.data.images import ImageDataset
from frugalml.errors import FrugalError
from frugalml.evaluate.perturb import perturb as perturb_texts
from frugalml.runtime.predictor import Predictor


@dataclass
class EvalReport:
    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    labels: list[str]
    confusion: list[list[int]]
    seconds: float
    # The same texts with noise (EvalConfig.perturb): its spec, and the report on them.
    perturb: str | None = None
    perturbed: EvalReport | None = None
    # ROC AUC: of the second label for two classes, else one-vs-rest macro over the classes
    # present (None where no class has both positives and negatives).
    roc_auc: float | None = None
    unit: str = "texts"  # what the inputs were: texts, images
    probabilities: np.ndarray | None = field(default=None, repr=False)  # (n, labels), input order

    def summary(self) -> dict[str, float | int | str]:
        summary: dict[str, float | int | str] = {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            f"{self.unit}_per_second": self.n / self.seconds if self.seconds else 0.0,
        }
        if self.roc_auc is not None:
            summary["roc_auc"] = self.roc_auc
        if self.perturbed is not None and self.perturb is not None:
            summary |= {
                "perturb": self.perturb,
                "perturbed_accuracy": self.perturbed.accuracy,
                "perturbed_macro_f1": self.perturbed.macro_f1,
                "accuracy_drop": self.accuracy - self.perturbed.accuracy,
                "macro_f1_drop": self.macro_f1 - self.perturbed.macro_f1,
            }
        return summary


def evaluate(
    predictor: Predictor,
    data: Dataset | ImageDataset,
    *,
    perturb: str | None = None,
    perturb_seed: int = 0,
) -> EvalReport:
    """Score `predictor` on `data` (texts or images, as its task takes); with `perturb`
    (perturb.parse_spec), also on a noisy copy of the texts drawn from `perturb_seed`, reported
    in `.perturbed`."""
    truth = data.require_labels()
    data.check_labels_known(predictor.labels)
    if isinstance(data, ImageDataset):
        if perturb is not None:
            raise FrugalError("--perturb adds noise to texts; it does not apply to images")
        return _score(predictor, list(data.images), truth, "images")
    report = _score(predictor, data.texts, truth, "texts")
    if perturb is not None:
        noisy = perturb_texts(data.texts, perturb, seed=perturb_seed)
        report.perturb, report.perturbed = perturb, _score(predictor, noisy, truth, "texts")
    return report


def _score(predictor: Predictor, inputs: Sequence[Any], truth: list[str], unit: str) -> EvalReport:
    started = time.perf_counter()
    probabilities = predictor.predict_proba(inputs)
    seconds = time.perf_counter() - started
    predicted = [predictor.labels[i] for i in probabilities.argmax(axis=1)]
    report = score(truth, predicted, predictor.labels, seconds)
    report.roc_auc = roc_auc(truth, probabilities, predictor.labels)
    report.unit, report.probabilities = unit, probabilities
    return report


def roc_auc(truth: Sequence[str], probabilities: np.ndarray, labels: Sequence[str]) -> float | None:
    """ROC AUC of `probabilities` (columns in `labels` order): of the second label for two
    classes, else the macro mean over the classes one-vs-rest; classes that are all or none of
    the rows are left out, and None is returned when none is left."""
    truth_array = np.asarray(truth)
    scores = []
    for column, label in enumerate(labels[1:] if len(labels) == 2 else labels, 1 if len(labels) == 2 else 0):
        positive = truth_array == label
        if 0 < positive.sum() < len(truth_array):
            scores.append(roc_auc_score(positive, probabilities[:, column]))
    return float(np.mean(scores)) if scores else None


def score(truth: list[str], predicted: list[str], labels: list[str], seconds: float = 0.0) -> EvalReport:
    report = classification_report(truth, predicted, labels=labels, output_dict=True, zero_division=0)
    per_class = {
        label: {k: float(report[label][k]) for k in ("precision", "recall", "f1-score", "support")}
        for label in labels
    }
    return EvalReport(
        n=len(truth),
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(
            f1_score(truth, predicted, labels=sorted(set(truth)), average="macro", zero_division=0)
        ),
        per_class=per_class,
        labels=list(labels),
        confusion=confusion_matrix(truth, predicted, labels=labels).tolist(),
        seconds=seconds,
    )


def plot_confusion(report: EvalReport, path: Path) -> Path:
    """Write the confusion matrix as a PNG (row-normalized, so rare classes stay visible)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(report.confusion, dtype=float)
    normalized = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = max(6.0, 0.18 * len(report.labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(report.labels))
    font = 8 if len(report.labels) <= 30 else 5
    ax.set_xticks(ticks, report.labels, rotation=90, fontsize=font)
    ax.set_yticks(ticks, report.labels, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {report.accuracy:.3f}  macro-F1 {report.macro_f1:.3f}  (n={report.n})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
