"""The search space and the selection rule, as plain functions.

A recipe is a chain of technique steps applied to the source bundle, e.g.
`prune(layers=3) -> trim -> distill -> onnx -> int8`. Recipes share prefixes, so each distinct
prefix is built once. After measuring, the Pareto front is kept (no other candidate is at least
as good on every axis and better on one) and the selected candidate is the smallest, then
fastest, whose accuracy drop from the baseline is within the budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from frugalml.bundle import TEXT_TASK
from frugalml.compress.techniques import TECHNIQUES, techniques_for

Step = tuple[str, tuple[tuple[str, Any], ...]]  # (technique, sorted options): hashable, so prefixes share
Recipe = tuple[Step, ...]

QUANTIZERS = tuple(name for name, t in TECHNIQUES.items() if t.source_format == "onnx")


def step(name: str, **options: Any) -> Step:
    return name, tuple(sorted(options.items()))


def describe(recipe: Recipe) -> str:
    """`prune(layers=3) + trim + distill + onnx + int8`: a recipe as people read it."""
    parts = []
    for name, options in recipe:
        shown = ",".join(f"{k}={v}" for k, v in options)
        parts.append(f"{name}({shown})" if shown else name)
    return " + ".join(parts) or "baseline"


def recipes(
    techniques: Sequence[str],
    source_format: str,
    layers: Sequence[int] = (),
    heads: float = 1.0,
    ffn: Sequence[float] = (1.0,),
    *,
    task: str = TEXT_TASK,
    channels: Sequence[float] = (),
    small_student: bool = False,
) -> list[Recipe]:
    """Every recipe the enabled `techniques` that apply to `task` allow, for a source bundle of
    `source_format`.

    PyTorch-level prefixes (none; trim; a pruned student -> distill for each student size) are
    each followed by the ONNX-level suffixes (onnx; onnx -> q for each quantizer q, the techniques
    that read ONNX). A student size is a depth in `layers` for text (with trim before distill) and
    a fraction of channels kept in `channels` for images; `small_student` adds a student distilled
    from scratch (an image teacher into a small CNN). A PyTorch-level prefix alone is a candidate
    too. An ONNX source only gets the quantization steps.
    """
    enabled = set(techniques) & set(techniques_for(task))
    quantizers = [[step(q)] for q in QUANTIZERS if q in enabled]
    if source_format == "onnx":
        return [tuple(q) for q in quantizers]
    suffixes = [[step("onnx")], *[[step("onnx"), *q] for q in quantizers]] if "onnx" in enabled else []
    trim = [step("trim")] if "trim" in enabled else []
    distill = [step("distill")] if "distill" in enabled else []
    prefixes: list[list[Step]] = [[]]
    if trim:
        prefixes.append(trim)
    if "prune" in enabled:
        # Trim before distilling: the student then trains a corpus-sized embedding matrix, not
        # 30k rows of which the corpus never touches most.
        for depth, kept in itertools.product(layers, ffn):
            width = {k: v for k, v in (("heads", heads), ("ffn", kept)) if v < 1}
            prefixes.append([step("prune", layers=depth, **width), *trim, *distill])
        prefixes += [[step("prune", channels=kept), *distill] for kept in channels]
    if small_student and distill:
        prefixes.append(distill)
    out: list[Recipe] = []
    for prefix in prefixes:
        if prefix:
            out.append(tuple(prefix))
        out += [tuple(prefix + suffix) for suffix in suffixes]
    return out


def pareto_mask(accuracy: Sequence[float], size: Sequence[float], latency: Sequence[float]) -> np.ndarray:
    """True for the points no other point dominates (higher accuracy, smaller size, lower latency)."""
    points = np.column_stack(
        [-np.asarray(accuracy, float), np.asarray(size, float), np.asarray(latency, float)]
    )
    keep = np.ones(len(points), dtype=bool)
    for i, point in enumerate(points):
        dominated_by = np.all(points <= point, axis=1) & np.any(points < point, axis=1)
        keep[i] = not dominated_by.any()
    return keep


def select_candidate(
    accuracy: Sequence[float],
    size: Sequence[float],
    latency: Sequence[float],
    baseline_accuracy: float,
    max_drop: float,
) -> int | None:
    """Index of the smallest (then fastest) point whose accuracy is within `max_drop` points.

    Accuracies are fractions (0.93); `max_drop` is in percentage points (1.0 = one point).
    None when no point is within the budget.
    """
    floor = baseline_accuracy - max_drop / 100 - 1e-12  # equality counts as within
    eligible = [i for i, a in enumerate(accuracy) if a >= floor]
    if not eligible:
        return None
    return min(eligible, key=lambda i: (size[i], latency[i]))
