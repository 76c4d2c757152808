"""A Grafana dashboard for one served model, over the metrics /metrics exposes.

`dashboard_document(model)` is the dashboard JSON (schema version 39) that Grafana imports as is
(Dashboards → Import) or provisions from a file. Its Prometheus data source is a variable, so it
works with whichever Prometheus scrapes the server.
"""

from __future__ import annotations

import hashlib
from typing import Any

from frugalml.monitor.rules import Thresholds, model_selector

RATE = "[$__rate_interval]"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# (title, unit, [(legend, PromQL)]); {M} is the model's label matcher, [W] the rate window, LOW
# the low-confidence bound.
PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Requests per second, by status",
        "reqps",
        [("{{status}}", "sum by (status) (rate(frugalml_requests_total{M}[W]))")],
    ),
    (
        "Request latency",
        "s",
        [
            (
                f"p{q}",
                f"histogram_quantile(0.{q}, sum by (le) (rate(frugalml_request_seconds_bucket{{M}}[W])))",
            )
            for q in (50, 90, 99)
        ],
    ),
    (
        "Error and 503 ratio",
        "percentunit",
        [
            (
                "5xx but 503",
                'sum(rate(frugalml_requests_total{M,status=~"5..",status!="503"}[W]))'
                " / sum(rate(frugalml_requests_total{M}[W]))",
            ),
            (
                "503",
                'sum(rate(frugalml_requests_total{M,status="503"}[W]))'
                " / sum(rate(frugalml_requests_total{M}[W]))",
            ),
        ],
    ),
    (
        "Batch size",
        "none",
        [
            ("mean", "sum(rate(frugalml_batch_size_sum{M}[W])) / sum(rate(frugalml_batch_size_count{M}[W]))"),
            ("p90", "histogram_quantile(0.9, sum by (le) (rate(frugalml_batch_size_bucket{M}[W])))"),
        ],
    ),
    (
        "Queue",
        "none",
        [
            ("queued texts", "sum(frugalml_queue_depth{M})"),
            ("queue limit", "sum(frugalml_queue_limit{M})"),
            ("requests in flight", "sum(frugalml_in_flight_requests{M})"),
        ],
    ),
    (
        "Time in queue and in the model (p90)",
        "s",
        [
            (
                "queue wait",
                "histogram_quantile(0.9, sum by (le) (rate(frugalml_queue_wait_seconds_bucket{M}[W])))",
            ),
            (
                "model call",
                "histogram_quantile(0.9, sum by (le) (rate(frugalml_inference_seconds_bucket{M}[W])))",
            ),
        ],
    ),
    (
        "Drift by feature (PSI, KS)",
        "none",
        [
            ("PSI {{feature}}", "max by (feature) (frugalml_drift_psi{M})"),
            ("KS {{feature}}", "max by (feature) (frugalml_drift_ks{M})"),
        ],
    ),
    (
        "Prediction confidence",
        "percentunit",
        [
            (
                f"p{q}",
                f"histogram_quantile(0.{q}, sum by (le)"
                " (rate(frugalml_prediction_confidence_bucket{M}[W])))",
            )
            for q in (10, 50)
        ]
        + [
            (
                "share at most LOW",
                'sum(rate(frugalml_prediction_confidence_bucket{M,le="LOW"}[W]))'
                " / sum(rate(frugalml_prediction_confidence_count{M}[W]))",
            )
        ],
    ),
    (
        "Predictions per second, by label",
        "ops",
        [("{{label}}", "sum by (label) (rate(frugalml_predictions_total{M}[W]))")],
    ),
    ("Ready", "none", [("{{version}}", "min by (version) (frugalml_model_ready{M})")]),
    (
        "Server process",
        "none",
        [
            ("CPU cores busy", 'rate(process_cpu_seconds_total{job=~"$job"}[W])'),
            ("resident memory (GiB)", 'process_resident_memory_bytes{job=~"$job"} / 2^30'),
            ("open files", 'process_open_fds{job=~"$job"}'),
        ],
    ),
]


def _panel(index: int, title: str, unit: str, targets: list[tuple[str, str]], model: str, low: str) -> dict:
    matcher = model_selector(model)[1:-1]
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + n),
                "datasource": DATASOURCE,
                "expr": expr.replace("{M}", "{" + matcher + "}")
                .replace("{M,", "{" + matcher + ",")
                .replace("[W]", RATE)
                .replace("LOW", low),
                "legendFormat": legend.replace("LOW", low),
            }
            for n, (legend, expr) in enumerate(targets)
        ],
    }


def dashboard_document(model: str, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The Grafana dashboard JSON for `model`; `thresholds` sets the low-confidence bound shown."""
    low = f"{(thresholds or Thresholds()).low_confidence:g}"
    return {
        "uid": "frugalml-" + hashlib.sha256(model.encode()).hexdigest()[:16],
        "title": f"frugalml: {model}",
        "tags": ["frugalml"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
                {
                    "name": "job",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {
                        "query": f"label_values(frugalml_model_info{model_selector(model)}, job)",
                        "refId": "job",
                    },
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": [
            _panel(i, title, unit, targets, model, low) for i, (title, unit, targets) in enumerate(PANELS)
        ],
    }
