"""The reference distributions a bundle carries for drift checks (`reference.json`).

Tune computes them on (a sample of) the training texts; compress copies them into the bundles it
derives. The features, for every text a model answers:

- `class`: the predicted class (its shares over the labels);
- `confidence`: the top class's probability;
- `length`: the text's length in characters;
- `embedding_pc1`.. : principal components of the pooled embedding as the classifier head sees
  it. The head is linear, so a row's log-probabilities minus their mean are the logits minus
  their mean: a linear projection of the pooled embedding. PCA on the reference rows picks the
  directions that vary most. This needs nothing but the probabilities every predictor returns
  (an ONNX graph outputs logits only) and no second forward pass; a shift the head is blind to
  (orthogonal to every class direction) does not show here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from frugalml.bundle import Bundle
from frugalml.errors import BundleError
from frugalml.monitor.drift import category_counts, histogram, quantile_edges
from frugalml.runtime.predictor import Predictor

REFERENCE_FILE = "reference.json"
FORMAT_VERSION = 1
LOG_FLOOR = 1e-30  # probabilities below count as this (a class the head never predicts is 0)


@dataclass(frozen=True)
class Reference:
    """The reference of one model: feature summaries plus the projection that makes the
    embedding components (mean and components over log-probability space)."""

    labels: list[str]
    rows: int
    features: dict[str, dict[str, Any]]
    projection_mean: np.ndarray
    projection: np.ndarray  # (components, classes)

    def features_of(
        self, texts: Sequence[str] | Sequence[int], probabilities: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The drift features of answered texts (or of their lengths), rows of `probabilities`
        in the same order."""
        return features_of(texts, probabilities, self.projection_mean, self.projection)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "labels": self.labels,
            "rows": self.rows,
            "projection": {"mean": _rounded(self.projection_mean), "components": _rounded(self.projection)},
            "features": self.features,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reference:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"reference format {data.get('version')!r}, expected {FORMAT_VERSION}")
        projection = data["projection"]
        return cls(
            labels=list(data["labels"]),
            rows=int(data["rows"]),
            features=data["features"],
            projection_mean=np.asarray(projection["mean"], dtype=np.float64),
            projection=np.asarray(projection["components"], dtype=np.float64).reshape(
                -1, len(data["labels"])
            ),
        )


def centered_log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """log p minus its row mean: the logits minus their row mean (softmax drops only a constant)."""
    logs = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), LOG_FLOOR))
    return logs - logs.mean(axis=1, keepdims=True)


def features_of(
    texts: Sequence[str] | Sequence[int], probabilities: np.ndarray, mean: np.ndarray, components: np.ndarray
) -> dict[str, np.ndarray]:
    """`texts` may be the texts or their lengths in characters."""
    probabilities = np.asarray(probabilities)
    projected = (centered_log_probabilities(probabilities) - mean) @ components.T
    lengths = (t if isinstance(t, int) else len(t) for t in texts)
    features = {
        "class": probabilities.argmax(axis=1),
        "confidence": probabilities.max(axis=1).astype(np.float64),
        "length": np.fromiter(lengths, dtype=np.float64, count=len(texts)),
    }
    for i in range(components.shape[0]):
        features[f"embedding_pc{i + 1}"] = projected[:, i]
    return features


def build_reference(
    texts: Sequence[str],
    probabilities: np.ndarray,
    labels: Sequence[str],
    *,
    bins: int = 10,
    components: int = 3,
    sample_size: int = 1000,
    seed: int = 0,
) -> Reference:
    """The reference of a model whose answers on `texts` are `probabilities`.

    Numeric features keep `bins` quantile bins with their counts (for PSI) and a random sample of
    at most `sample_size` values (for KS); the class feature keeps its counts per label.
    """
    probabilities = np.asarray(probabilities)
    if len(texts) != len(probabilities) or len(texts) < 2:
        raise ValueError("a reference needs at least two texts, each with its probabilities")
    if probabilities.shape[1] != len(labels):
        raise ValueError(f"{probabilities.shape[1]} probability columns for {len(labels)} labels")
    centered = centered_log_probabilities(probabilities)
    count = max(1, min(components, len(labels) - 1, len(texts) - 1))
    pca = PCA(n_components=count, random_state=seed).fit(centered)
    # Rounded as stored, so that the reference's values are the ones the stored projection makes.
    mean, projection = np.asarray(_rounded(pca.mean_)), np.asarray(_rounded(pca.components_))
    values = features_of(texts, probabilities, mean, projection)
    rng = np.random.default_rng(seed)
    summaries: dict[str, dict[str, Any]] = {
        "class": {
            "kind": "categorical",
            "counts": category_counts(values.pop("class"), categories=len(labels)).tolist(),
        }
    }
    for name, column in values.items():
        edges = quantile_edges(column, bins=bins)
        sample = column if len(column) <= sample_size else rng.choice(column, sample_size, replace=False)
        summaries[name] = {
            "kind": "numeric",
            "edges": _rounded(edges),
            "counts": histogram(column, edges).tolist(),
            "sample": _rounded(np.sort(sample)),
        }
    return Reference(list(labels), len(texts), summaries, mean, projection)


def reference_of(
    predictor: Predictor, texts: Sequence[str], *, max_rows: int = 2000, seed: int = 0
) -> Reference:
    """The reference of `predictor` on (a random sample of at most `max_rows` of) `texts`."""
    if len(texts) > max_rows:
        chosen = np.sort(np.random.default_rng(seed).choice(len(texts), max_rows, replace=False))
        texts = [texts[i] for i in chosen]
    return build_reference(texts, predictor.predict_proba(texts), predictor.labels, seed=seed)


def write_reference(folder: Path, reference: Reference) -> None:
    """Write `reference.json` into a bundle folder being populated."""
    (folder / REFERENCE_FILE).write_text(json.dumps(reference.to_json(), separators=(",", ":")) + "\n")


def copy_reference(source: Bundle, folder: Path) -> None:
    """Carry the source bundle's reference (if it has one) into a derived bundle being written."""
    if source.path is not None and REFERENCE_FILE in source.files:
        (folder / REFERENCE_FILE).write_bytes((source.path / REFERENCE_FILE).read_bytes())


def load_reference(bundle: Bundle) -> Reference | None:
    """The bundle's reference; None if it has none. The file was verified with the bundle."""
    if bundle.path is None or REFERENCE_FILE not in bundle.files:
        return None
    try:
        reference = Reference.from_json(json.loads((bundle.path / REFERENCE_FILE).read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"bundle {bundle.id}: {REFERENCE_FILE} is malformed ({exc})") from None
    if reference.labels != list(bundle.labels):
        raise BundleError(f"bundle {bundle.id}: {REFERENCE_FILE} names other labels than the bundle")
    return reference


def _rounded(values: np.ndarray) -> list:
    """Six significant digits: plenty for histograms, a third of the JSON."""
    return np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(np.asarray(values)).tolist()
