"""`frugalml monitor report`: live drift features from an access log or a running server,
scored against a bundle's reference, as a table, JSON and a PNG of the distributions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from frugalml.bundle import Bundle
from frugalml.data.io import atomic_target
from frugalml.errors import FrugalError
from frugalml.monitor.drift import Score, drift_scores, histogram
from frugalml.monitor.reference import REFERENCE_FILE, Reference, load_reference

DRIFT_ROUTE = "/v1/drift"  # serve/drift.py
PSI_LEVELS = (0.1, 0.25)  # below the first: stable; above the second: significant (docs/drift.md)


@dataclass(frozen=True)
class DriftReport:
    bundle_id: str
    model: str
    source: str
    rows: int
    scores: dict[str, Score]

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle_id": self.bundle_id,
            "model": self.model,
            "source": self.source,
            "rows": self.rows,
            "scores": {feature: asdict(score) for feature, score in self.scores.items()},
        }


def verdict(psi_value: float) -> str:
    return (
        "stable" if psi_value < PSI_LEVELS[0] else "moderate" if psi_value < PSI_LEVELS[1] else "significant"
    )


def bundle_reference(bundle: Bundle) -> Reference:
    reference = load_reference(bundle)
    if reference is None:
        raise FrugalError(
            f"bundle {bundle.id} has no drift reference ({REFERENCE_FILE}); tune writes one, "
            "compress carries it over"
        )
    return reference


def features_from_log(path: Path, model: str | None = None) -> tuple[str, dict[str, list]]:
    """The drift features that `frugalml serve`'s access log recorded, by model; returns the model
    name and its features, all requests' together."""
    if not path.is_file():
        raise FrugalError(f"{path}: no such log file")
    found: dict[str, dict[str, list]] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            record = _json_line(line)
            if record is None or not isinstance(record.get("drift"), dict):
                continue
            columns = found.setdefault(str(record.get("model")), {})
            for name, values in record["drift"].items():
                columns.setdefault(name, []).extend(values)
    if not found:
        raise FrugalError(
            f"{path}: no request carries drift features (serve a bundle that has a reference, with the "
            "access log on, and keep its JSON lines)"
        )
    return _pick(found, model, str(path))


def features_from_url(
    url: str, model: str | None = None, api_key: str | None = None, timeout: float = 30.0
) -> tuple[str, dict[str, list]]:
    """The drift window of a running `frugalml serve` (its GET /v1/drift)."""
    target = url.rstrip("/") + DRIFT_ROUTE
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(target, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise FrugalError(f"cannot reach {target}: {exc}") from None
    if response.status_code != 200:
        raise FrugalError(f"{target} answered {response.status_code}: {response.text[:200]}")
    try:
        models = response.json()["models"]
        found = {name: window["features"] for name, window in models.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise FrugalError(f"{target} did not answer a frugalml drift document") from None
    if not found:
        raise FrugalError(f"{target}: the server monitors no model (none of its bundles has a reference)")
    return _pick(found, model, target)


def live_arrays(features: dict[str, list], reference: Reference) -> dict[str, np.ndarray]:
    """Features as arrays, the class by index into the reference's labels; refuses features of
    another model (other labels or another projection)."""
    missing = set(reference.features) - set(features)
    if missing:
        raise FrugalError(f"the live features lack {', '.join(sorted(missing))}: recorded for another model?")
    index = {label: i for i, label in enumerate(reference.labels)}
    unknown = {str(label) for label in features["class"] if label not in index}
    if unknown:
        shown = ", ".join(sorted(unknown)[:3])
        raise FrugalError(f"the live classes include {shown}, which the bundle does not know: another model?")
    live = {"class": np.array([index[label] for label in features["class"]], dtype=int)}
    for name in reference.features:
        if name != "class":
            try:
                live[name] = np.asarray(features[name], dtype=np.float64)
            except (TypeError, ValueError):
                raise FrugalError(f"live feature {name} holds values that are not numbers") from None
    if len({len(values) for values in live.values()}) != 1 or len(live["class"]) == 0:
        raise FrugalError("the live features are empty or of unequal lengths")
    return live


def drift_report(
    bundle: Bundle, reference: Reference, model: str, source: str, live: dict[str, np.ndarray]
) -> DriftReport:
    return DriftReport(bundle.id, model, source, len(live["class"]), drift_scores(reference.features, live))


def plot_drift(reference: Reference, live: dict[str, np.ndarray], report: DriftReport, path: Path) -> Path:
    """One panel per feature: the reference's and the live shares per bin (classes: the labels
    whose shares differ most)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(reference.features)
    columns = 3
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        summary = reference.features[name]
        ref_counts = np.asarray(summary["counts"], dtype=float)
        if summary["kind"] == "categorical":
            live_counts = np.bincount(live[name], minlength=len(ref_counts)).astype(float)
            ticks = [str(label) for label in reference.labels]
        else:
            edges = np.asarray(summary["edges"])
            live_counts = histogram(live[name], edges).astype(float)
            ticks = [f"<{edges[0]:.3g}", *(f"≥{e:.3g}" for e in edges)]
        ref_share, live_share = ref_counts / ref_counts.sum(), live_counts / live_counts.sum()
        shown = np.arange(len(ref_share))
        if len(shown) > 20:  # the 20 bins whose shares differ most, in their order
            shown = np.sort(np.argsort(-np.abs(live_share - ref_share))[:20])
        x = np.arange(len(shown))
        ax.bar(x - 0.2, ref_share[shown], width=0.4, label="reference", color="#4c72b0")
        ax.bar(x + 0.2, live_share[shown], width=0.4, label="live", color="#dd8452")
        ax.set_xticks(x, [ticks[i] for i in shown], rotation=90, fontsize=6)
        score = report.scores[name]
        ks_text = f", KS {score.ks:.3f}" if score.ks is not None else ""
        ax.set_title(f"{name}: PSI {score.psi:.3f}{ks_text}", fontsize=9)
        ax.set_ylabel("share")
        ax.legend(fontsize=7)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"drift of {report.model} ({report.rows} live texts) against bundle {report.bundle_id}")
    fig.tight_layout()
    with atomic_target(path) as temp:
        fig.savefig(temp, dpi=110, format="png")
    plt.close(fig)
    return path


def _json_line(line: str) -> dict | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _pick(found: dict[str, dict[str, list]], model: str | None, source: str) -> tuple[str, dict[str, list]]:
    if model is not None:
        if model not in found:
            raise FrugalError(f"{source}: no drift features for model {model!r}; found: {_names(found)}")
        return model, found[model]
    if len(found) > 1:
        raise FrugalError(f"{source} holds several models ({_names(found)}); name one with --model")
    return next(iter(found.items()))


def _names(found: Iterable[str]) -> str:
    return ", ".join(sorted(found))
