"""Prometheus alert rules for one served model, and `promtool test rules` unit tests for them.

`rules_document(model)` is a rule file as a dict (`{"groups": [...]}`): Prometheus loads it as is,
the Kubernetes PrometheusRule wraps it, and the server's embedded evaluator (monitor/alerting.py)
runs the same rules on its own metrics. Each rule says in its annotations which check it is
(`frugalml_check`), its threshold and its rate window, which is all the embedded evaluator reads
besides `for:`; the PromQL is what Prometheus reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client.utils import floatToGoString

from frugalml.errors import FrugalError
from frugalml.monitor.metrics import CONFIDENCE_BUCKETS, LATENCY_BUCKETS

CHECK = "frugalml_check"
THRESHOLD = "frugalml_threshold"
WINDOW = "frugalml_window"


@dataclass(frozen=True)
class Thresholds:
    """When each alert fires. Ratios are over the last `window_s` seconds of traffic; an alert
    fires once its condition has held for `for_s` seconds (`not_ready_for_s` for readiness)."""

    p99_ms: float = 500.0  # request latency, 99th percentile
    error_ratio: float = 0.05  # share of requests answered 5xx other than 503
    overload_ratio: float = 0.05  # share of requests refused with 503 (queue full, shutting down)
    queue_saturation: float = 0.8  # queued texts over the queue's limit
    drift_psi: float = 0.2  # population stability index of any monitored feature
    low_confidence: float = 0.5  # a prediction whose top probability is at most this is unsure
    low_confidence_share: float = 0.3  # share of unsure predictions
    window_s: int = 300
    for_s: int = 120
    not_ready_for_s: int = 60

    def __post_init__(self) -> None:
        positive = ("p99_ms", "window_s")
        ratios = ("error_ratio", "overload_ratio", "queue_saturation", "low_confidence_share")
        wrong = [f"{name} must be > 0" for name in positive if not getattr(self, name) > 0]
        # A share above 1 cannot happen, so a threshold of 1 could never fire.
        wrong += [f"{name} must be in (0, 1)" for name in ratios if not 0 < getattr(self, name) < 1]
        wrong += [f"{name} must be >= 0" for name in ("for_s", "not_ready_for_s") if getattr(self, name) < 0]
        if not self.drift_psi > 0:
            wrong.append("drift_psi must be > 0")
        if self.low_confidence not in CONFIDENCE_BUCKETS:
            bounds = ", ".join(f"{b:g}" for b in CONFIDENCE_BUCKETS)
            wrong.append(f"low_confidence must be a confidence histogram bound ({bounds})")
        if wrong:
            raise FrugalError("alert thresholds: " + "; ".join(wrong))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _quote(value: str) -> str:
    """A PromQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def model_selector(model: str, *matchers: str) -> str:
    """`{model="..."}` with `matchers` added."""
    return "{" + ",".join([f"model={_quote(model)}", *matchers]) + "}"


def _rule(
    alert: str, expr: str, for_s: int, model: str, check: str, threshold: float, window_s: int, summary: str
) -> dict[str, Any]:
    return {
        "alert": alert,
        "expr": expr,
        "for": f"{for_s}s",
        "labels": {"severity": "critical" if check == "not_ready" else "warning", "model": model},
        "annotations": {
            "summary": summary,
            "description": f"{summary} (threshold {threshold:g}, window {window_s}s, for {for_s}s).",
            CHECK: check,
            THRESHOLD: floatToGoString(threshold),
            WINDOW: f"{window_s}s",
        },
    }


def rules_document(model: str, thresholds: Thresholds | None = None) -> dict:
    """A Prometheus rule file (as a dict with "groups") alerting on `model`'s served metrics."""
    t = thresholds or Thresholds()
    m = model_selector(model)
    w = f"[{t.window_s}s]"
    requests = f"sum(rate(frugalml_requests_total{m}{w}))"
    errors = model_selector(model, 'status=~"5.."', 'status!="503"')
    refused = model_selector(model, 'status="503"')
    unsure = model_selector(model, f'le="{floatToGoString(t.low_confidence)}"')
    rules = [
        _rule(
            "FrugalmlHighLatencyP99",
            f"histogram_quantile(0.99, sum by (le) (rate(frugalml_request_seconds_bucket{m}{w})))"
            f" > {t.p99_ms / 1000:g}",
            t.for_s,
            model,
            "p99_latency",
            t.p99_ms / 1000,
            t.window_s,
            f"{model}: p99 request latency above {t.p99_ms:g} ms",
        ),
        _rule(
            "FrugalmlHighErrorRatio",
            f"sum(rate(frugalml_requests_total{errors}{w})) / {requests} > {t.error_ratio:g}",
            t.for_s,
            model,
            "error_ratio",
            t.error_ratio,
            t.window_s,
            f"{model}: more than {t.error_ratio:.0%} of requests fail",
        ),
        _rule(
            "FrugalmlOverloaded",
            f"sum(rate(frugalml_requests_total{refused}{w})) / {requests} > {t.overload_ratio:g}",
            t.for_s,
            model,
            "overload_ratio",
            t.overload_ratio,
            t.window_s,
            f"{model}: more than {t.overload_ratio:.0%} of requests refused with 503",
        ),
        _rule(
            "FrugalmlQueueSaturated",
            f"sum(frugalml_queue_depth{m}) / sum(frugalml_queue_limit{m}) > {t.queue_saturation:g}",
            t.for_s,
            model,
            "queue_saturation",
            t.queue_saturation,
            t.window_s,
            f"{model}: batch queue more than {t.queue_saturation:.0%} full",
        ),
        _rule(
            "FrugalmlNotReady",
            f"min(frugalml_model_ready{m}) < 1 or absent(frugalml_model_ready{m})",
            t.not_ready_for_s,
            model,
            "not_ready",
            1,
            t.window_s,
            f"{model}: not ready to serve",
        ),
        _rule(
            "FrugalmlDrift",
            f"max by (feature) (frugalml_drift_psi{m}) > {t.drift_psi:g}",
            t.for_s,
            model,
            "drift_psi",
            t.drift_psi,
            t.window_s,
            f"{model}: live inputs drifted from the training data (PSI)",
        ),
        _rule(
            "FrugalmlLowConfidence",
            f"sum(rate(frugalml_prediction_confidence_bucket{unsure}{w}))"
            f" / sum(rate(frugalml_prediction_confidence_count{m}{w})) > {t.low_confidence_share:g}",
            t.for_s,
            model,
            "low_confidence",
            t.low_confidence_share,
            t.window_s,
            f"{model}: more than {t.low_confidence_share:.0%} of predictions have confidence"
            f" at most {t.low_confidence:g}",
        ),
    ]
    return {"groups": [{"name": f"frugalml-{model}", "rules": rules}]}


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f"{key}={_quote(value)}" for key, value in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _replace(series: list[dict[str, str]], *new: dict[str, str]) -> list[dict[str, str]]:
    """`series` with those of the metrics in `new` swapped for `new`."""
    names = {s["series"].split("{")[0] for s in new}
    return [s for s in series if s["series"].split("{")[0] not in names] + list(new)


def rules_unit_tests(model: str, thresholds: Thresholds | None, rule_file: str) -> dict:
    """`promtool test rules` tests for `rules_document(model, thresholds)` saved as `rule_file`:
    no alert fires on healthy traffic (each metric at half its threshold or better), and each
    alert, alone, fires when its metric runs past its threshold."""
    t = thresholds or Thresholds()
    step = 15
    minutes = (t.window_s + max(t.for_s, t.not_ready_for_s)) // 60 + 3
    points = minutes * 60 // step
    rate = 100.0  # requests (and texts) per step

    def rising(share: float) -> str:
        return f"0+{rate * share:g}x{points}"

    def steady(value: float) -> str:
        return f"{value:g}x{points}"

    m = {"model": model}
    limit = t.p99_ms / 1000
    fast_le = floatToGoString(max([b for b in LATENCY_BUCKETS if b <= limit / 2], default=0.0))
    slow_le = floatToGoString(min([b for b in LATENCY_BUCKETS if b >= limit * 2], default=limit * 2))
    unsure_le = floatToGoString(t.low_confidence)
    healthy = [
        _series("frugalml_requests_total", rising(1), **m, status="200"),
        _series("frugalml_request_seconds_bucket", rising(1), **m, le=fast_le),
        _series("frugalml_request_seconds_bucket", rising(1), **m, le="+Inf"),
        _series("frugalml_queue_depth", steady(0), **m),
        _series("frugalml_queue_limit", steady(1024), **m),
        _series("frugalml_model_ready", steady(1), **m, version="v1"),
        _series("frugalml_drift_psi", steady(t.drift_psi / 2), **m, feature="length"),
        _series(
            "frugalml_prediction_confidence_bucket", rising(t.low_confidence_share / 2), **m, le=unsure_le
        ),
        _series("frugalml_prediction_confidence_count", rising(1), **m),
    ]
    # Failing (or refused) requests beside the healthy ones, making up a share halfway to 1.
    failing, refused = ((1 + r) / (1 - r) for r in (t.error_ratio, t.overload_ratio))
    cases = {
        # Every request between twice the threshold and the fast bucket below it.
        "FrugalmlHighLatencyP99": _replace(
            healthy,
            _series("frugalml_request_seconds_bucket", rising(0), **m, le=fast_le),
            _series("frugalml_request_seconds_bucket", rising(1), **m, le=slow_le),
            _series("frugalml_request_seconds_bucket", rising(1), **m, le="+Inf"),
        ),
        "FrugalmlHighErrorRatio": [
            *healthy,
            _series("frugalml_requests_total", rising(failing), **m, status="500"),
        ],
        "FrugalmlOverloaded": [
            *healthy,
            _series("frugalml_requests_total", rising(refused), **m, status="503"),
        ],
        "FrugalmlQueueSaturated": _replace(
            healthy,
            _series("frugalml_queue_depth", steady(1024 * min(1.0, t.queue_saturation * 1.1 + 0.01)), **m),
        ),
        "FrugalmlNotReady": _replace(healthy, _series("frugalml_model_ready", steady(0), **m, version="v1")),
        "FrugalmlDrift": _replace(
            healthy, _series("frugalml_drift_psi", steady(t.drift_psi * 2), **m, feature="length")
        ),
        "FrugalmlLowConfidence": _replace(
            healthy,
            _series(
                "frugalml_prediction_confidence_bucket",
                rising(min(1.0, (1 + t.low_confidence_share) / 2)),
                **m,
                le=unsure_le,
            ),
        ),
    }
    rules = {rule["alert"]: rule for rule in rules_document(model, t)["groups"][0]["rules"]}
    at = f"{minutes * 60 - step}s"

    def expectations(firing: str | None) -> list[dict[str, Any]]:
        tests = []
        for name, rule in rules.items():
            labels = {**rule["labels"], **({"feature": "length"} if name == "FrugalmlDrift" else {})}
            alerts = (
                [{"exp_labels": labels, "exp_annotations": rule["annotations"]}] if name == firing else []
            )
            tests.append({"eval_time": at, "alertname": name, "exp_alerts": alerts})
        return tests

    tests = [
        {
            "name": "healthy traffic raises no alert",
            "interval": f"{step}s",
            "input_series": healthy,
            "alert_rule_test": expectations(None),
        }
    ]
    tests += [
        {
            "name": f"{alert} fires alone",
            "interval": f"{step}s",
            "input_series": series,
            "alert_rule_test": expectations(alert),
        }
        for alert, series in cases.items()
    ]
    return {"rule_files": [rule_file], "evaluation_interval": f"{step}s", "tests": tests}
