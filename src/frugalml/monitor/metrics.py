"""Prometheus metrics of the serving path.

Each app gets its own registry (tests run several apps in one process). With several worker
processes, `PROMETHEUS_MULTIPROC_DIR` must be set before prometheus_client is imported: every
worker then writes its values to files there and any worker's /metrics sums them all.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

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
            "Inference request latency from arrival to response.",
            ["model", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "frugalml_queue_wait_seconds",
            "Time a request waited in the batch queue before its batch started.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "frugalml_inference_seconds",
            "Model time per batch (tokenization included).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "frugalml_batch_size",
            "Texts per model batch.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "frugalml_queue_depth",
            "Texts waiting in the batch queue.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "frugalml_in_flight_requests",
            "Inference requests queued or running now.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "frugalml_model_info",
            "Loaded models (value 1), with their bundle metadata.",
            ["model", "version", "bundle_id", "format", "precision", "method"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        # Set by monitor/window.py for models whose bundle carries a reference (monitor/reference.py).
        self.drift_psi = Gauge(
            "frugalml_drift_psi",
            "Population stability index of a feature over the recent window against the bundle's reference.",
            ["model", "feature"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )
        self.drift_ks = Gauge(
            "frugalml_drift_ks",
            "Kolmogorov-Smirnov statistic of a numeric feature over the recent window against the reference.",
            ["model", "feature"],
            registry=self.registry,
            multiprocess_mode="livemostrecent",
        )

    def exposition(self) -> bytes:
        """The text format for /metrics: this process's registry, or every worker's files."""
        if multiprocess_mode():
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)

    @staticmethod
    def process_exited(pid: int) -> None:
        """Drop a finished worker's live gauges (queue depth, in-flight, model info)."""
        if multiprocess_mode():
            multiprocess.mark_process_dead(pid)
