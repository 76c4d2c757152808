"""Embedded alerting: the evaluator over a real registry (for:, firing, resolved, no duplicates,
reminders), webhook notifications that never hold up the server, and the whole path from an
induced fault on a live server to a webhook receiver and `frugalml alerts list`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from monitor_support import webhook_receiver
from test_cli import run_cli
from test_serve_support import free_port, running, wait_until

from frugalml.bundle import load_bundle
from frugalml.errors import FrugalError
from frugalml.lineage import open_store
from frugalml.monitor.alerting import Alert, AlertingConfig, Evaluator, load_rules
from frugalml.monitor.checks import histogram_quantile
from frugalml.monitor.metrics import MULTIPROC_ENV, ServingMetrics, multiprocess_registry
from frugalml.monitor.notify import WebhookNotifier, webhook_payload
from frugalml.monitor.rules import Thresholds, rules_document
from frugalml.runtime import load_predictor
from frugalml.serve import ServeConfig, create_app
from frugalml.serve.faults import Fault, FaultyPredictor
from frugalml.serve.runner import alerting

TEXTS = ["refund money back please", "my card was stolen"]


def _rules(tmp_path: Path, model: str = "m", **thresholds) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules_document(model, Thresholds(**thresholds))))
    return path


def _only(rules_path: Path, *alerts: str):
    return [rule for rule in load_rules(rules_path) if rule.alert in alerts]


def test_an_alert_fires_after_for_once_then_resolves(tmp_path):
    metrics = ServingMetrics()
    sent: list[tuple[str, str]] = []
    evaluator = Evaluator(
        _only(_rules(tmp_path, error_ratio=0.1, window_s=60, for_s=10), "FrugalmlHighErrorRatio"),
        lambda: metrics.registry,
        notify=lambda alert: sent.append((alert.labels["alertname"], alert.status)),
    )
    requests = metrics.requests
    evaluator.evaluate(0)
    requests.labels("m", "/v1/predict", "200").inc(10)
    requests.labels("m", "/v1/predict", "500").inc(10)
    assert evaluator.evaluate(1) == []  # pending
    assert [a.labels["alertname"] for a in evaluator.active] == ["FrugalmlHighErrorRatio"]
    assert evaluator.evaluate(8) == []
    fired = evaluator.evaluate(11)
    assert [a.status for a in fired] == ["firing"]
    assert fired[0].value == pytest.approx(0.5)
    for t in (12, 20, 40):  # still failing: no second notification
        requests.labels("m", "/v1/predict", "500").inc()
        assert evaluator.evaluate(t) == []
    requests.labels("m", "/v1/predict", "200").inc(1000)
    resolved = evaluator.evaluate(45)
    assert [(a.status, a.ended_at) for a in resolved] == [("resolved", 45)]
    assert sent == [("FrugalmlHighErrorRatio", "firing"), ("FrugalmlHighErrorRatio", "resolved")]
    assert evaluator.active == []


def test_a_condition_shorter_than_for_never_notifies_and_reminders_come_at_the_resend_interval(tmp_path):
    metrics = ServingMetrics()
    sent: list[str] = []
    evaluator = Evaluator(
        _only(_rules(tmp_path, for_s=30, not_ready_for_s=5), "FrugalmlNotReady"),
        lambda: metrics.registry,
        notify=lambda alert: sent.append(alert.status),
        resend_s=20,
    )
    ready = metrics.ready.labels("m", "v1")
    ready.set(0)
    evaluator.evaluate(0)
    ready.set(1)
    evaluator.evaluate(3)  # ready again before `for:` ran out
    ready.set(0)
    evaluator.evaluate(4)
    assert sent == []
    evaluator.evaluate(9)
    assert sent == ["firing"]
    for t in (10, 20, 28):
        evaluator.evaluate(t)
    assert sent == ["firing"]
    evaluator.evaluate(29)  # 20 s after it was sent
    assert sent == ["firing", "firing"]
    ready.set(1)
    evaluator.evaluate(30)
    assert sent == ["firing", "firing", "resolved"]


def test_every_check_fires_on_its_own_metric(tmp_path):
    metrics = ServingMetrics()
    psi = metrics.drift_psi
    evaluator = Evaluator(load_rules(_rules(tmp_path, for_s=0, not_ready_for_s=0)), lambda: metrics.registry)
    metrics.ready.labels("m", "v1").set(1)
    metrics.queue_limit.labels("m").set(100)
    psi.labels("m", "length").set(0.01)
    psi.labels("m", "class").set(0.01)
    evaluator.evaluate(0)
    for _ in range(20):
        metrics.latency.labels("m", "/v1/predict").observe(0.8)
    metrics.requests.labels("m", "/v1/predict", "503").inc(5)
    metrics.requests.labels("m", "/v1/predict", "504").inc(5)
    metrics.requests.labels("m", "/v1/predict", "200").inc(10)
    metrics.queue_depth.labels("m").set(90)
    psi.labels("m", "class").set(0.5)
    metrics.observe_predictions("m", ["a", "b", "c"], np.array([[0.4, 0.3, 0.3]] * 10))
    metrics.ready.labels("m", "v2").set(0)
    fired = {(a.labels["alertname"], a.labels.get("feature")): a.value for a in evaluator.evaluate(1)}
    assert set(fired) == {
        ("FrugalmlHighLatencyP99", None),
        ("FrugalmlHighErrorRatio", None),  # the 504s; the 503s count as overload
        ("FrugalmlOverloaded", None),
        ("FrugalmlQueueSaturated", None),
        ("FrugalmlNotReady", None),
        ("FrugalmlDrift", "class"),
        ("FrugalmlLowConfidence", None),
    }
    assert fired["FrugalmlHighErrorRatio", None] == pytest.approx(0.25)
    assert fired["FrugalmlQueueSaturated", None] == pytest.approx(0.9)
    assert fired["FrugalmlHighLatencyP99", None] == pytest.approx(0.5 + 0.5 * 0.99)


WORKER = """
import sys
from frugalml.monitor.metrics import ServingMetrics
metrics = ServingMetrics()
metrics.ready.labels("m", "v1").set(int(sys.argv[1]))
answered = metrics.requests.labels("m", "/v1/predict", sys.argv[2])
print("up", flush=True)
sys.stdin.readline()
answered.inc(10)
print("served", flush=True)
sys.stdin.readline()
"""


def test_with_worker_processes_one_evaluator_reads_every_workers_metrics(tmp_path, monkeypatch):
    """As in the supervisor of `serve --workers N`: the rules see the workers' merged metrics."""
    folder = tmp_path / "multiproc"
    folder.mkdir()
    env = {**os.environ, MULTIPROC_ENV: str(folder)}
    pipes = {"env": env, "stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, ready, status], **pipes)
        for ready, status in (("1", "200"), ("0", "500"))
    ]

    def say(line: str, expect: str) -> None:
        for worker in workers:
            if line:
                worker.stdin.write(line)
                worker.stdin.flush()
            assert worker.stdout.readline() == expect

    try:
        say("", "up\n")
        monkeypatch.setenv(MULTIPROC_ENV, str(folder))
        names = ("FrugalmlNotReady", "FrugalmlHighErrorRatio")
        rules = _only(_rules(tmp_path, for_s=0, not_ready_for_s=0, error_ratio=0.4), *names)
        evaluator = Evaluator(rules, multiprocess_registry)
        fired = [(a.labels["alertname"], a.value) for a in evaluator.evaluate(0)]
        assert fired == [("FrugalmlNotReady", 0.0)]  # one worker of two is not ready (livemin)
        say("go\n", "served\n")  # 10 answered 200 by one worker, 10 answered 500 by the other
        fired = [(a.labels["alertname"], a.value) for a in evaluator.evaluate(1)]
        assert fired == [("FrugalmlHighErrorRatio", 0.5)]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()


def test_histogram_quantile_follows_prometheus():
    buckets = {"0.1": 50.0, "0.5": 90.0, "1.0": 100.0, "+Inf": 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.1 + 0.4 * 20 / 40)
    assert histogram_quantile(0.99, {"0.1": 0.0, "1.0": 0.0, "+Inf": 10.0}) == 1.0  # past the last bound
    assert np.isnan(histogram_quantile(0.99, {"0.1": 0.0, "+Inf": 0.0}))


def _alert(name: str = "FrugalmlDrift") -> Alert:
    return Alert({"alertname": name, "model": "m", "severity": "warning"}, {"summary": "s"}, 1.0, 0, 0)


def test_notifications_reach_a_webhook_in_alertmanager_shape():
    with webhook_receiver() as (url, receiver):
        notifier = WebhookNotifier(url)
        alert = _alert()
        assert notifier.send(alert)
        alert.ended_at = 10.0
        assert notifier.send(alert)
        notifier.close()
    assert notifier.sent == 2
    assert [b["status"] for b in receiver.bodies] == ["firing", "resolved"]
    body = receiver.bodies[0]
    assert body == webhook_payload(_alert())
    assert body["version"] == "4"
    assert body["alerts"][0]["labels"]["alertname"] == "FrugalmlDrift"
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    assert receiver.bodies[1]["alerts"][0]["endsAt"] == "1970-01-01T00:00:10.000Z"


def test_a_hanging_receiver_fills_the_bounded_queue_and_sends_are_dropped_not_blocked():
    hold = threading.Event()
    with webhook_receiver(hold) as (url, receiver):
        notifier = WebhookNotifier(url, max_queue=2, timeout_s=30)
        # The first is taken by the sending thread (and hangs there); two fill the queue.
        results = [notifier.send(_alert(f"A{i}")) for i in range(6)]
        wait_until(lambda: notifier.dropped >= 3, what="drops")
        assert results.count(False) == notifier.dropped >= 3
        hold.set()
        notifier.close()
    assert notifier.sent == 6 - notifier.dropped
    assert len(receiver.bodies) == notifier.sent


def test_a_receiver_that_is_down_is_retried_then_given_up():
    notifier = WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", attempts=2, backoff_s=0.01)
    assert notifier.send(_alert())
    wait_until(lambda: notifier.failed == 1, what="given up")
    notifier.close()
    assert notifier.sent == 0


def test_faults_parse_and_refuse_nonsense():
    assert Fault.parse("slow:0.5") == Fault("slow", 0.5)
    assert Fault.parse("error:1") == Fault("error", 1.0)
    for bad in ("slow", "error:2", "slow:-1", "boom:1", "error:x"):
        with pytest.raises(FrugalError):
            Fault.parse(bad)


def test_an_induced_fault_on_a_live_server_alerts_a_webhook_then_resolves(
    bundle_path, home, tmp_path, capsys
):
    predictor = FaultyPredictor(load_predictor(load_bundle(bundle_path)), Fault("error", 1.0))
    rules = _rules(tmp_path, model="intent", error_ratio=0.5, window_s=60, for_s=1)
    app = create_app([("intent", predictor)], ServeConfig())
    with webhook_receiver() as (hook, receiver), running(app) as (url, _):
        config = AlertingConfig(str(rules), hook, interval_s=0.1)
        with alerting(config, ["intent"], app.state.alert_registry):
            for _ in range(4):
                assert httpx.post(f"{url}/v1/predict", json={"inputs": TEXTS}).status_code == 500
            wait_until(lambda: receiver.alerts("firing"), what="firing notification")
            predictor.fault = Fault("error", 0.0)  # the fault goes away
            for _ in range(8):
                assert httpx.post(f"{url}/v1/predict", json={"inputs": TEXTS}).status_code == 200
            wait_until(lambda: receiver.alerts("resolved"), what="resolved notification")
    assert [a["labels"]["alertname"] for a in receiver.alerts()] == ["FrugalmlHighErrorRatio"] * 2
    rows = open_store().list_alerts()
    assert [(r["alertname"], r["status"], r["model"]) for r in rows] == [
        ("FrugalmlHighErrorRatio", "resolved", "intent")
    ]
    code, out, _ = run_cli(capsys, "alerts", "list", "--json")
    assert code == 0
    assert json.loads(out)[0]["ended_at"]


def test_a_slow_model_raises_the_p99_alert_on_a_live_server(bundle_path, tmp_path):
    predictor = FaultyPredictor(load_predictor(load_bundle(bundle_path)), Fault("slow", 0.25))
    app = create_app([("intent", predictor)], ServeConfig())
    rules = _only(
        _rules(tmp_path, model="intent", p99_ms=100, window_s=60, for_s=0), "FrugalmlHighLatencyP99"
    )
    evaluator = Evaluator(rules, app.state.alert_registry)
    with running(app) as (url, _):
        assert evaluator.evaluate() == []
        for _ in range(3):
            assert httpx.post(f"{url}/v1/predict", json={"inputs": TEXTS}).status_code == 200
        fired = evaluator.evaluate()
    assert [a.labels["alertname"] for a in fired] == ["FrugalmlHighLatencyP99"]
    assert fired[0].value >= 0.2  # every request took the 0.25 s the fault adds: bucket (0.2, ...]


def test_texts_unlike_the_training_data_raise_the_drift_alert(bundle_path, tmp_path):
    """The bundle carries its training reference; 120 long texts of unknown words drift from it."""
    app = create_app([("intent", load_predictor(load_bundle(bundle_path)))], ServeConfig())
    rules = _only(_rules(tmp_path, model="intent", for_s=0), "FrugalmlDrift")
    evaluator = Evaluator(rules, app.state.alert_registry)
    shifted = [" ".join(["quarterly", "earnings", "beat", "analyst", "forecasts"] * 12)] * 120
    with running(app) as (url, _):
        assert evaluator.evaluate() == []
        assert httpx.post(f"{url}/v1/predict", json={"inputs": shifted}).status_code == 200
        fired = evaluator.evaluate()  # no scrape in between: the evaluator refreshes the window
    assert fired
    assert {a.labels["alertname"] for a in fired} == {"FrugalmlDrift"}
    assert all(a.value > 0.2 for a in fired)
    assert "length" in {a.labels["feature"] for a in fired}


@pytest.mark.slow
def test_serve_cli_with_alerts_and_a_fault_notifies_and_records(bundle_path, home, tmp_path, capsys):
    rules = _rules(tmp_path, model="shop", error_ratio=0.5, window_s=60, for_s=1)
    port = free_port()
    env = {**os.environ, "FRUGALML_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cli = [
        sys.executable,
        "-c",
        "import sys; from frugalml.cli import app; app(sys.argv[1:], prog_name='frugalml')",
    ]
    # Refused before any model loads: rules for a model not served, --notify without --alerts.
    (tmp_path / "other").mkdir()
    other = _rules(tmp_path / "other", model="other")
    for bad in (["--alerts", str(other)], ["--notify", "http://127.0.0.1:9/"]):
        command = [*cli, "serve", f"shop={bundle_path}", "--port", str(port), *bad]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("error: "), done.stderr
    with webhook_receiver() as (hook, receiver):
        options = ["--alerts", str(rules), "--notify", hook, "--alert-interval", "0.2", "--fault", "error:1"]
        process = subprocess.Popen(
            [*cli, "serve", f"shop={bundle_path}", "--port", str(port), "--no-access-log", *options],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: process.poll() is not None or _ready(url), timeout=120, what="server ready")
            for _ in range(4):
                assert httpx.post(f"{url}/v1/predict", json={"inputs": TEXTS}).status_code == 500
            wait_until(lambda: receiver.alerts("firing"), what="firing notification")
            _, out, _ = run_cli(capsys, "alerts", "list", "--firing", "--json")
            assert [r["alertname"] for r in json.loads(out)] == ["FrugalmlHighErrorRatio"]
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    assert "alert FrugalmlHighErrorRatio firing" in stderr
    _, out, _ = run_cli(capsys, "alerts", "list", "--json")
    # Firing when its server stopped: nobody watches it any more, so its state is unknown.
    assert [(r["alertname"], r["status"]) for r in json.loads(out)] == [("FrugalmlHighErrorRatio", "unknown")]
    code, out, _ = run_cli(capsys, "alerts", "list")
    assert code == 0
    assert "unknown" in out


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.TransportError:
        return False
