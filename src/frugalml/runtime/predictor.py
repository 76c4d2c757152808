"""The Predictor protocol: what serving, evaluation and the CLI need from a loaded model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from frugalml.bundle import Bundle


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


class Predictor(Protocol):
    """What serving, evaluation and the CLI need from a loaded model."""

    labels: list[str]

    @property
    def bundle(self) -> Bundle | None:
        """The bundle the model was loaded from; None for one not saved as a bundle (yet)."""
        ...

    def predict_proba(self, inputs: Sequence[Any]) -> np.ndarray:
        """Class probabilities, shape (len(inputs), len(labels)), rows in input order. `inputs`
        are of the bundle's task: texts (str), or images (uint8 arrays, HWC or HW)."""
        ...

    def warmup(self) -> None:
        """Run once on dummy input so the first real request is not the slow one."""
        ...


def top_predictions(labels: Sequence[str], probabilities: np.ndarray) -> list[Prediction]:
    best = probabilities.argmax(axis=1)
    return [Prediction(labels[i], float(probabilities[row, i])) for row, i in enumerate(best)]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
