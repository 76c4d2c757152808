"""Prometheus metrics of the serving path, on a registry of their own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "frugalml_requests",
            "Inference requests by model, route and HTTP status.",
            ["model", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "frugalml_request_seconds",
            "Request latency from arrival to response.",
            ["model", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "frugalml_inference_seconds",
            "Model time per batch.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "frugalml_batch_size",
            "Texts per model batch.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "frugalml_in_flight_requests",
            "Requests being handled now.",
            ["model"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "frugalml_model_info",
            "Loaded models (value 1), with their bundle metadata.",
            ["model", "bundle_id", "format", "precision", "method"],
            registry=self.registry,
        )
