"""Helpers for the monitoring tests (and bench/monitor.py): a webhook receiver on loopback,
Prometheus text parsing, a real Prometheus + Alertmanager on loopback."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import yaml


class Receiver:
    """The JSON bodies posted to a webhook, in arrival order."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.arrived = threading.Condition()

    def alerts(self, status: str | None = None) -> list[dict]:
        with self.arrived:
            found = [alert for body in self.bodies for alert in body.get("alerts", [])]
        return [a for a in found if status is None or a["status"] == status]


@contextmanager
def webhook_receiver(hold: threading.Event | None = None) -> Iterator[tuple[str, Receiver]]:
    """A real HTTP server on a free loopback port that records what is posted to it; with `hold`,
    each answer waits until `hold` is set (a receiver that hangs)."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if hold is not None:
                hold.wait(30)
            with receiver.arrived:
                receiver.bodies.append(body)
                receiver.arrived.notify_all()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", receiver
    finally:
        if hold is not None:
            hold.set()
        server.shutdown()
        server.server_close()


def exposed_names(text: str) -> set[str]:
    """Sample names in Prometheus text output (`frugalml_requests_total`, `..._bucket` ...)."""
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][\w:]*)[{ ]", text, re.MULTILINE)}


def queried_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (frugalml's and the process collector's)."""
    return set(re.findall(r"\b((?:frugalml|process)_[a-z_]+)\b", expr))


PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")  # Debian's name
TOOLS_MISSING = (
    None
    if PROMETHEUS and ALERTMANAGER
    else "prometheus and alertmanager not installed and `make monitoring-tools` could not install them "
    "(needs root and apt: Debian's prometheus and prometheus-alertmanager packages)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready within {timeout} s: {log.read_text()[-2000:]}")


@contextmanager
def monitoring_stack(
    folder: Path, rules: Path, target: str, receiver_url: str, scrape_s: float = 1.0
) -> Iterator[tuple[str, str]]:
    """Prometheus scraping `target` (host:port) every `scrape_s` and evaluating `rules` ten times as
    often, sending to an Alertmanager that posts at once to `receiver_url`; both on loopback with
    their data in `folder`. Yields (Prometheus URL, Alertmanager URL); stops both afterwards.

    An alert reaches the webhook after the scrape that first sees the fault (up to one scrape
    interval), then the evaluation that first reads that scrape (up to one evaluation interval, as
    Prometheus does not align evaluations with scrapes), then `for:`. Evaluating as often as
    scraping could thus take up to `for:` plus two scrape intervals; a tenth of it brings that to
    `for:` plus 1.1 (bench/monitor.py: median 2.56 s for `for:` 2 s and a 1 s scrape), and seven
    rules cost Prometheus little that often."""
    assert PROMETHEUS and ALERTMANAGER, TOOLS_MISSING
    evaluation_ms = max(1, round(scrape_s * 100))
    am_port, prom_port = _free_port(), _free_port()
    (folder / "alertmanager.yml").write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "hook",
                    "group_by": ["alertname", "model"],
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {"name": "hook", "webhook_configs": [{"url": receiver_url, "send_resolved": True}]}
                ],
            }
        )
    )
    (folder / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": f"{scrape_s:g}s", "evaluation_interval": f"{evaluation_ms}ms"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [{"job_name": "frugalml", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    processes: list[subprocess.Popen] = []
    try:
        am_log = folder / "alertmanager.log"
        processes.append(
            subprocess.Popen(
                [
                    ALERTMANAGER,
                    f"--config.file={folder / 'alertmanager.yml'}",
                    f"--storage.path={folder / 'am-data'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",  # no gossip port on every interface
                ],
                stdout=subprocess.DEVNULL,
                stderr=am_log.open("w"),
            )
        )
        prom_log = folder / "prometheus.log"
        processes.append(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'prom-data'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=prom_log.open("w"),
            )
        )
        am_url, prom_url = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
        _wait_http(f"{am_url}/-/ready", processes[0], am_log)
        _wait_http(f"{prom_url}/-/ready", processes[1], prom_log)
        yield prom_url, am_url
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
