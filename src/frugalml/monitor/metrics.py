"""Prometheus metrics of the serving path.

Each app gets its own registry (tests run several apps in one process). With several worker
processes, `PROMETHEUS_MULTIPROC_DIR` must be set before prometheus_client is imported: every
worker then writes its values to files there and any worker's /metrics sums them all.

Process metrics (CPU seconds, resident memory, open files) come from prometheus_client's
ProcessCollector: of this process, or summed over the live workers in multiprocess mode.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256)
# The top label's probability; the rules' low-confidence threshold must be one of these bounds.
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Live gauges keep one file per live worker (`gauge_livesum_<pid>.db`) until the worker is marked dead.
_LIVE_FILE = re.compile(r"^gauge_live\w*_(\d+)\.db$")


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
        self.queue_limit = Gauge(
            "frugalml_queue_limit",
            "Texts the batch queue holds before refusing requests with 503.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.ready = Gauge(
            "frugalml_model_ready",
            "1 while a model version is loaded, warmed up and taking requests, else 0.",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.predictions = Counter(
            "frugalml_predictions",
            "Texts classified, by model and predicted label.",
            ["model", "label"],
            registry=self.registry,
        )
        self.confidence = Histogram(
            "frugalml_prediction_confidence",
            "Probability of the predicted (top) label, per text.",
            ["model"],
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        if not multiprocess_mode():  # else multiprocess_registry() adds every worker's
            ProcessCollector(registry=self.registry)
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

    def start_at_zero(self, model: str, routes: Iterable[str]) -> None:
        """Expose `model`'s request series before its first request: Prometheus computes a rate
        from two scrapes of a series, so a series born with the first failure would alert a scrape
        later than one that was already there at 0."""
        for route in routes:
            for status in ("200", "500", "503", "504"):
                self.requests.labels(model, route, status)
            self.latency.labels(model, route)
        self.confidence.labels(model)

    def observe_predictions(self, model: str, labels: list[str], probabilities: np.ndarray) -> None:
        """Count each text's predicted label and observe its probability."""
        if not len(probabilities):
            return
        best = probabilities.argmax(axis=1)
        for index, count in enumerate(np.bincount(best, minlength=len(labels))):
            if count:
                self.predictions.labels(model, labels[index]).inc(int(count))
        confidence = self.confidence.labels(model)
        for value in probabilities[np.arange(len(best)), best].tolist():
            confidence.observe(value)

    def collecting_registry(self) -> CollectorRegistry:
        """What /metrics shows: this process's registry, or every worker's files plus their
        process metrics."""
        return multiprocess_registry() if multiprocess_mode() else self.registry

    def exposition(self) -> bytes:
        """The text format for /metrics."""
        return generate_latest(self.collecting_registry())

    @staticmethod
    def process_exited(pid: int) -> None:
        """Drop a finished worker's live gauges (queue depth, in-flight, model info)."""
        if multiprocess_mode():
            multiprocess.mark_process_dead(pid)


def multiprocess_registry() -> CollectorRegistry:
    """Every worker's metrics, merged from PROMETHEUS_MULTIPROC_DIR, with their process metrics."""
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    merged.register(WorkerProcesses(os.environ[MULTIPROC_ENV]))
    return merged


class WorkerProcesses(Collector):
    """ProcessCollector's metrics summed over the live worker processes of a multiprocess dir
    (CPU seconds, memory and open files add up; the limit of open files is the largest)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def _pids(self) -> list[int]:
        pids = set()
        for path in self.directory.glob("gauge_live*.db"):
            match = _LIVE_FILE.match(path.name)
            if match and Path(f"/proc/{match.group(1)}").exists():
                pids.add(int(match.group(1)))
        return sorted(pids)

    def collect(self) -> Iterable[Metric]:
        totals: dict[str, tuple[str, float]] = {}
        for pid in self._pids():
            for family in ProcessCollector(pid=_constant(pid), registry=None).collect():
                for sample in family.samples:
                    documentation, value = totals.get(sample.name, (family.documentation, 0.0))
                    if sample.name in ("process_max_fds", "process_start_time_seconds"):
                        combine = max if sample.name == "process_max_fds" else min
                        value = combine(value, sample.value) if sample.name in totals else sample.value
                    else:
                        value += sample.value
                    totals[sample.name] = (documentation, value)
        # Gauges all (CPU seconds included): the sum over live workers falls when one exits.
        for name, (documentation, value) in totals.items():
            yield GaugeMetricFamily(name, f"{documentation} (live workers, summed)", value=value)


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid
