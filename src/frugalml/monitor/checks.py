"""The checks of the alert rules, computed on the server's own metric samples as their PromQL
computes them on Prometheus's: rates as increases over the rule's window (ratios and quantiles only,
so Prometheus's extrapolation cancels out), `histogram_quantile` by linear interpolation within a
bucket, `absent()` as 1. Each returns the series whose condition holds, with their values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.registry import CollectorRegistry

from frugalml.errors import FrugalError

Labels = frozenset[tuple[str, str]]
Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value) pairs


@dataclass(frozen=True)
class Rule:
    alert: str
    check: str
    model: str
    threshold: float
    window_s: float
    for_s: float
    labels: dict[str, str]
    annotations: dict[str, str]
    expr: str


def read_samples(registry: CollectorRegistry) -> Samples:
    samples: Samples = {}
    for family in registry.collect():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


class Window:
    """The readings of one rule's window: the oldest within it and the newest."""

    def __init__(self, first: Samples, last: Samples):
        self.first, self.last = first, last

    def increase(self, name: str, keep: Callable[[dict[str, str]], bool]) -> float:
        def total(samples: Samples) -> float:
            return sum(value for labels, value in samples.get(name, []) if keep(labels))

        return max(0.0, total(self.last) - total(self.first))

    def increase_by(self, name: str, key: str, keep: Callable[[dict[str, str]], bool]) -> dict[str, float]:
        def totals(samples: Samples) -> dict[str, float]:
            out: dict[str, float] = {}
            for labels, value in samples.get(name, []):
                if keep(labels):
                    out[labels[key]] = out.get(labels[key], 0.0) + value
            return out

        before = totals(self.first)
        return {k: max(0.0, v - before.get(k, 0.0)) for k, v in totals(self.last).items()}

    def now(self, name: str, keep: Callable[[dict[str, str]], bool]) -> list[tuple[dict[str, str], float]]:
        return [(labels, value) for labels, value in self.last.get(name, []) if keep(labels)]


def histogram_quantile(q: float, buckets: dict[str, float]) -> float:
    """Prometheus's `histogram_quantile` over cumulative bucket counts keyed by `le`."""
    bounds = sorted((float(le), count) for le, count in buckets.items())
    if not bounds or bounds[-1][0] != math.inf or bounds[-1][1] == 0:
        return math.nan
    rank = q * bounds[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for i, (bound, count) in enumerate(bounds):
        if count >= rank:
            if bound == math.inf:  # past the last finite bucket: its upper bound
                return bounds[i - 1][0] if i > 0 else math.nan
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return math.nan


Measure = Callable[[Rule, Window], dict[Labels, float]]
NO_LABELS: Labels = frozenset()


def _of(model: str, **exact: str) -> Callable[[dict[str, str]], bool]:
    return lambda labels: labels.get("model") == model and all(labels.get(k) == v for k, v in exact.items())


def _above(value: float, rule: Rule, labels: Labels = NO_LABELS) -> dict[Labels, float]:
    return {labels: value} if value > rule.threshold else {}  # nan compares false, as in PromQL


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else math.nan


def _p99(rule: Rule, window: Window) -> dict[Labels, float]:
    buckets = window.increase_by("frugalml_request_seconds_bucket", "le", _of(rule.model))
    return _above(histogram_quantile(0.99, buckets), rule)


def _requests_ratio(statuses: Callable[[str], bool]) -> Measure:
    def measure(rule: Rule, window: Window) -> dict[Labels, float]:
        name, model = "frugalml_requests_total", _of(rule.model)
        part = window.increase(name, lambda labels: model(labels) and statuses(labels.get("status", "")))
        return _above(_ratio(part, window.increase(name, model)), rule)

    return measure


def _queue_saturation(rule: Rule, window: Window) -> dict[Labels, float]:
    depth = sum(v for _, v in window.now("frugalml_queue_depth", _of(rule.model)))
    limit = sum(v for _, v in window.now("frugalml_queue_limit", _of(rule.model)))
    return _above(_ratio(depth, limit), rule)


def _not_ready(rule: Rule, window: Window) -> dict[Labels, float]:
    values = [v for _, v in window.now("frugalml_model_ready", _of(rule.model))]
    if not values:  # absent(...): 1
        return {NO_LABELS: 1.0}
    lowest = min(values)
    return {NO_LABELS: lowest} if lowest < rule.threshold else {}


def _drift(rule: Rule, window: Window) -> dict[Labels, float]:
    worst: dict[str, float] = {}
    for labels, value in window.now("frugalml_drift_psi", _of(rule.model)):
        feature = labels.get("feature", "")
        worst[feature] = max(worst.get(feature, -math.inf), value)
    firing: dict[Labels, float] = {}
    for feature, value in worst.items():
        firing.update(_above(value, rule, frozenset({("feature", feature)})))
    return firing


def _low_confidence(rule: Rule, window: Window) -> dict[Labels, float]:
    # The threshold is the share; the confidence bound is the bucket the rule's PromQL reads.
    bound = re.search(r'le="([^"]+)"', rule.expr)
    if bound is None:
        raise FrugalError(f"rule {rule.alert!r}: its expression names no confidence bucket (le=...)")
    le = bound.group(1)
    unsure = window.increase("frugalml_prediction_confidence_bucket", _of(rule.model, le=le))
    total = window.increase("frugalml_prediction_confidence_count", _of(rule.model))
    return _above(_ratio(unsure, total), rule)


MEASURES: dict[str, Measure] = {
    "p99_latency": _p99,
    "error_ratio": _requests_ratio(lambda status: status.startswith("5") and status != "503"),
    "overload_ratio": _requests_ratio(lambda status: status == "503"),
    "queue_saturation": _queue_saturation,
    "not_ready": _not_ready,
    "drift_psi": _drift,
    "low_confidence": _low_confidence,
}
