"""The Predictor protocol and the registry that picks an implementation by bundle format."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from frugalml.bundle import Bundle
from frugalml.errors import BundleError


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float


class Predictor(Protocol):
    """What serving, evaluation and the CLI need from a loaded model."""

    bundle: Bundle
    labels: list[str]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape (len(texts), len(labels)), rows in input order."""
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


_FORMATS: dict[str, Callable[..., Predictor]] = {}


def register_format(name: str, factory: Callable[..., Predictor]) -> None:
    """Make `load_predictor` open bundles of format `name` with `factory(bundle, **options)`."""
    _FORMATS[name] = factory


def _import_builtin_formats() -> None:
    from frugalml.runtime import onnx_predictor, torch_predictor  # noqa: F401  (they register)


def load_predictor(bundle: Bundle, **options: object) -> Predictor:
    if bundle.format not in _FORMATS:
        _import_builtin_formats()
    if bundle.format not in _FORMATS:
        raise BundleError(
            f"bundle {bundle.id} has format {bundle.format!r}; this install reads {sorted(_FORMATS)}"
        )
    return _FORMATS[bundle.format](bundle, **options)
