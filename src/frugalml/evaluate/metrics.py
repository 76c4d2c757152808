"""Evaluation: accuracy, macro-F1, per-class scores, confusion matrix, latency."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from frugalml.data import Dataset
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

    def summary(self) -> dict[str, float | int]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "texts_per_second": self.n / self.seconds if self.seconds else 0.0,
        }


def evaluate(predictor: Predictor, data: Dataset) -> EvalReport:
    truth = data.require_labels()
    data.check_labels_known(predictor.labels)
    started = time.perf_counter()
    probabilities = predictor.predict_proba(data.texts)
    seconds = time.perf_counter() - started
    predicted = [predictor.labels[i] for i in probabilities.argmax(axis=1)]
    return score(truth, predicted, predictor.labels, seconds)


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
