"""Helpers for the serving tests: a tiny bundle, a real server on loopback, a gated predictor."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from conftest import make_rows, write_csv

from frugalml.serve.connections import ServerConfig
from frugalml.serve.runner import DrainingServer
from frugalml.settings import Settings
from frugalml.tune import TuneConfig
from frugalml.tune.workflow import tune_and_register


def tune_tiny_bundle(tiny_base: Path, files: dict[str, Path], home: Path) -> str:
    """A head bundle on the tiny BERT, registered in `home`; returns its folder."""
    config = TuneConfig(method="head", base=str(tiny_base), epochs=3, batch_size=8)
    summary = tune_and_register(files["train"], config, eval_path=files["test"], settings=Settings(home=home))
    return summary.bundle_path


def tiny_intent_bundle(tiny_base: Path, folder: Path) -> str:
    """A head bundle on the tiny BERT, tuned on 20 generated rows and tested on 8 (files written in
    `folder`), registered in `folder / "home"`; returns its folder."""
    files = {
        "train": write_csv(folder / "train.csv", make_rows(20, seed=1)),
        "test": write_csv(folder / "test.csv", make_rows(8, seed=2)),
    }
    return tune_tiny_bundle(tiny_base, files, folder / "home")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready within {timeout} s")


@contextmanager
def running(app, drain_s: float | None = None) -> Iterator[tuple[str, DrainingServer]]:
    """Serve `app` as `frugalml serve` does, on a free loopback port in a thread; yields (base url,
    server)."""
    port = free_port()
    config = ServerConfig(
        app,
        app.state.config,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=drain_s,
    )
    server = DrainingServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        yield url, server
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class GatedPredictor:
    """A real predictor whose model calls wait for `gate` to open: tests decide when batches run."""

    def __init__(self, inner):
        self.inner = inner
        self.bundle = inner.bundle
        self.labels = inner.labels
        self.gate = threading.Event()
        self.calls: list[int] = []  # texts per model call

    def predict_proba(self, texts):
        self.calls.append(len(texts))
        if not self.gate.wait(timeout=30):
            raise TimeoutError("test gate never opened")
        return self.inner.predict_proba(texts)

    def warmup(self) -> None:
        self.inner.warmup()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return 0.0


def wait_until(condition, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)
