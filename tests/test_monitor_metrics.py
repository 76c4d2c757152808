"""Metrics worth alerting on, from a real server: process metrics, predictions by label, confidence,
readiness and queue limit; and the dashboard's queries against what /metrics really exposes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
from monitor_support import exposed_names, queried_names
from test_cli import run_cli
from test_serve_support import metric, running

from frugalml.bundle import load_bundle
from frugalml.monitor.dashboard import dashboard_document
from frugalml.monitor.metrics import CONFIDENCE_BUCKETS, ServingMetrics, WorkerProcesses
from frugalml.monitor.rules import rules_document
from frugalml.serve import ServeConfig, create_app

TEXTS = ["refund money back please", "my card was stolen", "forgot password reset", "i need the card"]


@pytest.fixture(scope="module")
def served(predictor):
    """A live server that has answered TEXTS once on v1 and once on v2; yields (url, /metrics text)."""
    with running(create_app(predictor, ServeConfig(max_queue=500), name="intent")) as (url, _):
        assert httpx.post(f"{url}/v1/predict", json={"inputs": TEXTS}).status_code == 200
        body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}]}
        assert httpx.post(f"{url}/v2/models/intent/infer", json=body).status_code == 200
        yield url, httpx.get(f"{url}/metrics").text


def test_predictions_are_counted_by_label_with_their_confidence(served, predictor):
    _, text = served
    probabilities = predictor.predict_proba(TEXTS)
    best = probabilities.argmax(axis=1)
    for index, label in enumerate(predictor.labels):
        expected = 2 * int((best == index).sum())  # v1 and v2
        assert metric(text, "frugalml_predictions_total", model="intent", label=label) == expected
    assert metric(text, "frugalml_prediction_confidence_count", model="intent") == 2 * len(TEXTS)
    top = probabilities.max(axis=1)
    for bound in CONFIDENCE_BUCKETS:
        counted = metric(text, "frugalml_prediction_confidence_bucket", model="intent", le=f"{bound}")
        assert counted == 2 * int((top <= bound).sum())
    assert metric(text, "frugalml_prediction_confidence_sum", model="intent") == pytest.approx(
        2 * top.sum(), 1e-5
    )


def test_process_readiness_and_queue_limit_are_exposed(served, predictor):
    _, text = served
    assert metric(text, "process_resident_memory_bytes") > 10 * 2**20
    assert metric(text, "process_open_fds") > 0
    assert metric(text, "process_cpu_seconds_total") > 0
    version = predictor.bundle.id
    assert metric(text, "frugalml_model_ready", model="intent", version=version) == 1
    assert metric(text, "frugalml_queue_limit", model="intent") == 500


def test_no_text_no_count():
    metrics = ServingMetrics()
    metrics.observe_predictions("m", ["a", "b"], np.zeros((0, 2)))
    metrics.observe_predictions("m", ["a", "b"], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    text = metrics.exposition().decode()
    assert metric(text, "frugalml_predictions_total", model="m", label="a") == 2
    assert metric(text, "frugalml_predictions_total", model="m", label="b") == 1
    assert metric(text, "frugalml_prediction_confidence_bucket", model="m", le="0.6") == 1


def test_every_dashboard_and_rule_query_reads_metrics_the_server_exposes(served):
    url, _ = served
    # Enough texts for the drift window to score (monitor/window.py: MIN_ROWS).
    assert httpx.post(f"{url}/v1/predict", json={"inputs": TEXTS * 30}).status_code == 200
    exposed = exposed_names(httpx.get(f"{url}/metrics").text)
    dashboard = dashboard_document("intent")
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queries.append(dashboard["templating"]["list"][1]["query"]["query"])
    queries += [rule["expr"] for rule in rules_document("intent")["groups"][0]["rules"]]
    used = set().union(*(queried_names(q) for q in queries))
    expected = {"frugalml_requests_total", "frugalml_batch_size_bucket", "process_cpu_seconds_total"}
    assert expected | {"frugalml_drift_psi", "frugalml_drift_ks"} <= used
    assert used - exposed == set()  # the bundle carries a drift reference: its gauges are there too
    # Every panel is placed, has a unique id and reads the data source variable.
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(t["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"] for t in p["targets"])
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("requests", "latency", "batch", "queue", "error", "drift", "confidence"):
        assert topic in titles


def test_dashboard_command_writes_the_same_json(capsys, tmp_path, home, bundle_path):
    code, _, err = run_cli(capsys, "monitor", "dashboard", "intent", "--output", str(tmp_path / "d.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "d.json").read_text()) == dashboard_document("intent")
    code, out, _ = run_cli(capsys, "monitor", "dashboard", bundle_path, "--json")  # a bundle: its name
    assert code == 0
    assert json.loads(out) == dashboard_document(load_bundle(bundle_path).name)
    code, out, err = run_cli(capsys, "monitor", "dashboard", "a/b")
    assert code == 2
    assert out == ""
    assert "cannot be served" in err
    assert len(err.strip().splitlines()) == 1


WORKER = """
import sys, time
from frugalml.monitor.metrics import ServingMetrics
ServingMetrics().queue_limit.labels("m").inc(10)  # a live gauge: this worker's file
print("up", flush=True)
time.sleep(120)
"""


def _rss(pid: int) -> int:
    return int(open(f"/proc/{pid}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_worker_processes_report_their_summed_process_metrics(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "up\n"
        samples = {s.name: s.value for family in WorkerProcesses(tmp_path).collect() for s in family.samples}
        rss = sum(_rss(worker.pid) for worker in workers)
        assert 0.8 * rss < samples["process_resident_memory_bytes"] < 1.2 * rss
        fds = sum(len(os.listdir(f"/proc/{worker.pid}/fd")) for worker in workers)
        assert samples["process_open_fds"] == fds
        assert samples["process_cpu_seconds_total"] > 0
        # A worker that has exited drops out once it is marked dead, as the server does.
        workers[1].kill()
        workers[1].wait()
        ServingMetrics.process_exited(workers[1].pid)  # a no-op here: this process is not multiprocess
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(workers[1].pid, str(tmp_path))
        samples = {s.name: s.value for family in WorkerProcesses(tmp_path).collect() for s in family.samples}
        assert (
            0.8 * _rss(workers[0].pid) < samples["process_resident_memory_bytes"] < 1.2 * _rss(workers[0].pid)
        )
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
