"""What a compress run found: every measured bundle as an entry, the front and the selection.

`CompressResult.to_json()` is the document `frugalml compress --json` prints and the report
holds; entries are plain dicts in that document's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frugalml.bundle import Bundle
from frugalml.compress.search import Recipe, describe, pareto_mask, select_candidate

MEASURED = ("accuracy", "macro_f1", "p50_ms", "p90_ms", "batch32_per_s", "peak_rss_mb")


@dataclass
class CompressResult:
    run_id: str
    max_drop: float
    threads: int
    inference_env: dict[str, str | None]
    selected: dict[str, Any] | None  # an entry: the baseline's when no candidate is within budget
    baseline: dict[str, Any]
    candidates: list[dict[str, Any]]
    pareto: list[str]  # ids of the bundles on the front, the baseline's among them when it is
    failed: list[dict[str, str]]  # {"recipe", "error"} for each candidate not built or not measured
    drift: dict[str, float] = field(default_factory=dict)
    report: dict[str, str] = field(default_factory=dict)  # report file paths by kind: json, md, png

    @property
    def kept(self) -> set[str]:
        """The bundles `keep=front` keeps: the baseline, the front and the selected one."""
        selected = {self.selected["bundle_id"]} if self.selected else set()
        return {self.baseline["bundle_id"], *self.pareto, *selected}

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "max_drop": self.max_drop,
            "threads": self.threads,
            "inference_env": self.inference_env,
            "selected": self.selected,
            "baseline": self.baseline,
            "candidates": self.candidates,
            "pareto": self.pareto,
            "failed": self.failed,
            "drift": self.drift,
            "report": self.report,
        }


def rank(
    baseline: Bundle,
    candidates: list[tuple[Recipe, Bundle]],
    measured: dict[str, dict[str, Any]],
    *,
    max_drop: float,
    failed: list[dict[str, str]],
    run_id: str,
) -> CompressResult:
    """Entries for the baseline and each measured candidate, the Pareto front and the selection."""
    base = measured[baseline.id]
    entries = [entry(baseline, (), base, base)] + [
        entry(bundle, recipe, measured[bundle.id], base) for recipe, bundle in candidates
    ]
    accuracy = [e["accuracy"] for e in entries]
    size = [e["size_bytes"] for e in entries]
    latency = [e["p50_ms"] for e in entries]
    front = pareto_mask(accuracy, size, latency)
    for each, on_front in zip(entries, front, strict=True):
        each["pareto"] = bool(on_front)
        each["within_budget"] = each["accuracy_drop"] <= max_drop + 1e-9
    chosen = select_candidate(accuracy, size, latency, base["accuracy"], max_drop)
    return CompressResult(
        run_id=run_id,
        max_drop=max_drop,
        threads=base["threads"],
        inference_env=base["inference_env"],
        selected=entries[chosen] if chosen is not None else None,
        baseline=entries[0],
        candidates=entries[1:],
        pareto=[e["bundle_id"] for e in entries if e["pareto"]],
        failed=failed,
    )


def speed_ratios(figures: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """How much faster than `base`: batch-1 p50 latency and batch-32 throughput."""
    return {
        "latency_ratio": base["p50_ms"] / figures["p50_ms"],
        "throughput_ratio": figures["batch32_per_s"] / base["batch32_per_s"],
    }


def entry(bundle: Bundle, recipe: Recipe, figures: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """One measured bundle as the document lists it, compared with the baseline's figures `base`."""
    predictions = np.asarray(figures["predictions"])
    return {
        "bundle_id": bundle.id,
        "bundle_path": str(bundle.path),
        "name": bundle.name,
        "recipe": describe(recipe),
        "format": bundle.format,
        "precision": bundle.precision,
        **{k: figures[k] for k in (*MEASURED, "size_bytes", "load_seconds")},
        "accuracy_drop": (base["accuracy"] - figures["accuracy"]) * 100,
        "size_ratio": base["size_bytes"] / figures["size_bytes"],
        **speed_ratios(figures, base),
        "agreement": float((predictions == np.asarray(base["predictions"])).mean()),
        "build": bundle.metrics,
        "removed": False,
    }
