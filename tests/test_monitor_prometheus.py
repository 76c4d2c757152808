"""The generated rules in a real Prometheus scraping a live `frugalml serve` with an induced fault,
alerting through a real Alertmanager to a webhook receiver (Debian's prometheus and
prometheus-alertmanager; `make monitoring-tools` installs them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import yaml
from monitor_support import TOOLS_MISSING, exposed_names, monitoring_stack, webhook_receiver
from test_serve_support import free_port, wait_until

from frugalml.monitor.rules import Thresholds, rules_document

THRESHOLDS = Thresholds(error_ratio=0.5, window_s=10, for_s=2)
SCRAPE_S = 1.0
CLI = [sys.executable, "-c", "import sys; from frugalml.cli import app; app(sys.argv[1:])"]


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _query(prometheus: str, expr: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@pytest.mark.slow
@pytest.mark.skipif(TOOLS_MISSING is not None, reason=TOOLS_MISSING or "")
def test_a_fault_reaches_a_webhook_through_prometheus_and_alertmanager(bundle_path, tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(rules_document("shop", THRESHOLDS)))
    port = free_port()
    env = {**os.environ, "FRUGALML_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [*CLI, "serve", f"shop={bundle_path}", "--port", str(port), "--no-access-log", "--fault", "error:1"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    try:
        wait_until(lambda: server.poll() is not None or _ready(url), timeout=120, what="server ready")
        assert server.poll() is None, server.communicate()[1][-2000:]
        with (
            webhook_receiver() as (hook, receiver),
            monitoring_stack(tmp_path, rules, f"127.0.0.1:{port}", hook, SCRAPE_S) as (prometheus, _),
        ):
            wait_until(lambda: _query(prometheus, 'up{job="frugalml"} == 1'), timeout=30, what="first scrape")
            # Prometheus stores every series the server exposes.
            scraped = set(httpx.get(f"{prometheus}/api/v1/label/__name__/values").json()["data"])
            assert exposed_names(httpx.get(f"{url}/metrics").text) <= scraped

            started = time.monotonic()

            def traffic() -> None:
                while not stop.is_set():
                    with contextlib.suppress(httpx.HTTPError):  # a slow answer on a busy machine
                        httpx.post(f"{url}/v1/predict", json={"inputs": ["refund please"]}, timeout=30)
                    stop.wait(0.1)

            sender = threading.Thread(target=traffic, daemon=True)
            sender.start()
            wait_until(lambda: receiver.alerts("firing"), timeout=60, what="alert at the webhook")
            seconds = time.monotonic() - started
            stop.set()
            sender.join(10)
            alert = receiver.alerts("firing")[0]
            assert alert["labels"]["alertname"] == "FrugalmlHighErrorRatio"
            assert alert["labels"]["model"] == "shop"
            assert alert["annotations"]["frugalml_check"] == "error_ratio"
            assert receiver.bodies[0]["receiver"] == "hook"
            # Reported, not asserted: the goal is within `for:` plus one scrape interval.
            print(f"fault to webhook: {seconds:.2f} s (for: {THRESHOLDS.for_s} s, scrape {SCRAPE_S:g} s)")
    finally:
        stop.set()
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
