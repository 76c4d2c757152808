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
REFRESH_S = 10.0  # between scrapes, the gauges are recomputed at most this often (~10 ms a model)


class DriftWindow:
    """The last `size` texts one model answered (their lengths and probabilities), and their
    drift scores.

    `observe` runs on the event loop after each inference call and only stores; the features and
    scores are computed for the whole window in `refresh`, before each scrape and at most every
    `refresh_s` seconds as requests arrive (so that every worker process keeps its gauges fresh).
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
        self._chunks: deque[tuple[list[int], np.ndarray]] = deque()
        self._rows = 0
        self._refreshed = time.monotonic()
        self._stale = False
        self.scores: dict[str, Score] = {}

    def observe(self, texts: Sequence[str], probabilities: np.ndarray) -> None:
        """Add answered texts to the window."""
        self._chunks.append(([len(t) for t in texts], probabilities))
        self._rows += len(texts)
        while self._rows - len(self._chunks[0][0]) >= self.size:
            self._rows -= len(self._chunks.popleft()[0])
        self._stale = True
        if time.monotonic() - self._refreshed >= self.refresh_s:
            self.refresh()

    def live(self) -> dict[str, np.ndarray]:
        """The features of the window's texts, the last `size`."""
        if not self._chunks:
            return self.reference.features_of([], np.empty((0, len(self.reference.labels))))
        lengths = [n for chunk, _ in self._chunks for n in chunk][-self.size :]
        probabilities = np.concatenate([p for _, p in self._chunks])[-self.size :]
        return self.reference.features_of(lengths, probabilities)

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

    def request_features(self, texts: Sequence[str], probabilities: np.ndarray) -> dict[str, list]:
        """One request's features as the access log records them."""
        return loggable(self.reference.features_of(texts, probabilities), self.reference.labels)


def loggable(features: dict[str, np.ndarray], labels: Sequence[str]) -> dict[str, list]:
    """Features as JSON lists: the class by label name, numbers rounded to 4 decimals."""
    # Python's round on a list: numpy's per-call overhead dominates for a request's few texts.
    return {
        name: [labels[i] for i in values.tolist()]
        if name == "class"
        else [round(v, 4) for v in values.tolist()]
        for name, values in features.items()
    }


def window_for(bundle: Bundle | None, model: str, metrics: ServingMetrics) -> DriftWindow | None:
    """A drift window for a served model, if its bundle carries a reference."""
    reference = load_reference(bundle) if bundle is not None else None
    return DriftWindow(reference, model, metrics) if reference is not None else None
