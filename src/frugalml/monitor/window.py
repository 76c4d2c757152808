"""The server side of drift: a sliding window of one model's recent answers, scored against the
reference its bundle carries, exposed as `frugalml_drift_psi` / `frugalml_drift_ks` gauges."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from frugalml.bundle import Bundle
from frugalml.monitor.drift import Score, drift_scores
from frugalml.monitor.metrics import ServingMetrics
from frugalml.monitor.reference import Reference, load_reference

WINDOW_ROWS = 1000  # texts scored: PSI's own noise is about (bins - 1) / rows, 0.01 here
MIN_ROWS = 100  # fewer texts than this expose no score: PSI would be mostly noise
REFRESH_S = 1.0  # the gauges are recomputed at most this often (a few ms per model)


class DriftWindow:
    """The features of the last `size` texts one model answered, and their drift scores.

    `observe` runs on the event loop after each inference call and refreshes the gauges at most
    every `refresh_s` seconds; `refresh` (before a scrape) brings them up to date.
    """

    def __init__(
        self,
        reference: Reference,
        model: str,
        metrics: ServingMetrics,
        *,
        size: int = WINDOW_ROWS,
        min_rows: int = MIN_ROWS,
        refresh_s: float = REFRESH_S,
    ):
        if not 0 < min_rows <= size:
            raise ValueError(f"need 0 < min_rows <= size, got {min_rows} and {size}")
        self.reference, self.model, self.metrics = reference, model, metrics
        self.size, self.min_rows, self.refresh_s = size, min_rows, refresh_s
        self._chunks: deque[dict[str, np.ndarray]] = deque()
        self._rows = 0
        self._refreshed = -np.inf
        self._stale = False
        self.scores: dict[str, Score] = {}

    def observe(self, texts: Sequence[str], probabilities: np.ndarray) -> dict[str, np.ndarray]:
        """Add answered texts to the window; returns their features."""
        features = self.reference.features_of(texts, probabilities)
        self._chunks.append(features)
        self._rows += len(texts)
        while self._rows - len(self._chunks[0]["class"]) >= self.size:
            self._rows -= len(self._chunks.popleft()["class"])
        self._stale = True
        if time.monotonic() - self._refreshed >= self.refresh_s:
            self.refresh()
        return features

    def live(self) -> dict[str, np.ndarray]:
        """The window's features, the last `size` texts."""
        if not self._chunks:
            return {name: np.empty(0) for name in self.reference.features}
        names = self._chunks[0].keys()
        return {name: np.concatenate([c[name] for c in self._chunks])[-self.size :] for name in names}

    def refresh(self) -> None:
        """Score the window and set the gauges (none until `min_rows` texts were seen)."""
        if not self._stale:
            return
        self._stale = False
        self._refreshed = time.monotonic()
        if self._rows < self.min_rows:
            return
        self.scores = drift_scores(self.reference.features, self.live())
        for feature, score in self.scores.items():
            self.metrics.drift_psi.labels(self.model, feature).set(score.psi)
            if score.ks is not None:
                self.metrics.drift_ks.labels(self.model, feature).set(score.ks)

    def snapshot(self) -> dict[str, Any]:
        """The window as JSON: its scores and every feature's values (for `frugalml monitor report`)."""
        self.refresh()
        return {
            "rows": min(self._rows, self.size),
            "window": self.size,
            "min_rows": self.min_rows,
            "scores": {feature: asdict(score) for feature, score in self.scores.items()},
            "features": loggable(self.live(), self.reference.labels),
        }


def loggable(features: dict[str, np.ndarray], labels: Sequence[str]) -> dict[str, list]:
    """Features as JSON lists: the class by label name, numbers rounded to 4 decimals."""
    return {
        name: [labels[i] for i in values] if name == "class" else np.round(values, 4).tolist()
        for name, values in features.items()
    }


def window_for(bundle: Bundle | None, model: str, metrics: ServingMetrics) -> DriftWindow | None:
    """A drift window for a served model, if its bundle carries a reference."""
    reference = load_reference(bundle) if bundle is not None else None
    return DriftWindow(reference, model, metrics) if reference is not None else None
