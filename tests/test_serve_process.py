"""`frugalml serve` as a real process: SIGTERM drains and exits 0; workers share their metrics."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_serve_support import free_port, metric, wait_ready, wait_until

# The real CLI, with the torch format wrapped so that texts containing "slow" take a while:
# a request is then surely in flight when the signal arrives. LOAD_DELAY_S makes loading the
# model take that many seconds more.
SLOW_CLI = """
import os, sys, time
from frugalml.runtime import FORMATS
from frugalml.runtime.torch_predictor import TorchPredictor

class Slow(TorchPredictor):
    @classmethod
    def from_bundle(cls, bundle, **options):
        time.sleep(float(os.environ.get("LOAD_DELAY_S", "0")))
        return super().from_bundle(bundle, **options)

    def predict_proba(self, texts):
        if any("slow" in t for t in texts):
            time.sleep(1.5)
        return super().predict_proba(texts)

FORMATS["text-classification", "torch"] = Slow.from_bundle
from frugalml.cli import app
app(sys.argv[1:], prog_name="frugalml")
"""


def _start(bundle_path: str, *options: str, home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "FRUGALML_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, "serve", bundle_path, "--port", str(port), *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so _kill reaches the workers too
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _ready(url), timeout=300, what="server ready")
    except TimeoutError:
        _kill(process)
    if process.poll() is not None or not _ready(url):
        _kill(process)
        raise AssertionError(process.communicate()[1][-3000:])
    return process, url


def _kill(process: subprocess.Popen) -> None:
    """Kill the server and its workers: a worker left alive holds the pipes open, and reading
    them to the end would then never return."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def test_sigterm_finishes_in_flight_requests_and_exits_0(bundle_path, tmp_path):
    process, url = _start(bundle_path, home=tmp_path)
    try:
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{url}/v1/predict", json={"inputs": ["slow refund"]}, timeout=30)
            )
        )
        request.start()
        wait_until(
            lambda: metric(httpx.get(f"{url}/metrics").text, "frugalml_in_flight_requests") == 1,
            what="request in flight",
        )
        process.send_signal(signal.SIGTERM)
        request.join(30)
        _, stderr = process.communicate(timeout=60)
    finally:
        _kill(process)
    assert answers and answers[0].status_code == 200, stderr[-2000:]
    assert process.returncode == 0, stderr[-2000:]
    assert "Loading weights" not in stderr  # workers are as quiet as the CLI: no progress bars
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(r["path"] == "/v1/predict" and r["status"] == 200 and r["request_id"] for r in logged)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz")


def test_worker_processes_report_one_merged_set_of_metrics(bundle_path, tmp_path):
    process, url = _start(bundle_path, "--workers", "2", "--no-access-log", home=tmp_path)
    try:
        for _ in range(12):  # a new connection each time: the kernel spreads them over the workers
            assert httpx.post(f"{url}/v1/predict", json={"inputs": ["refund please"]}).status_code == 200
        scrapes = [httpx.get(f"{url}/metrics").text for _ in range(6)]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        _kill(process)
    for text in scrapes:  # whichever worker answers, the counts cover both
        assert metric(text, "frugalml_requests_total", model="train", status="200") == 12
        assert metric(text, "frugalml_batch_size_count", model="train") == 12
        assert metric(text, "frugalml_model_info", model="train") == 1
    assert process.returncode == 0, stderr[-2000:]
    assert "Loading weights" not in stderr  # workers are as quiet as the CLI: no progress bars


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:  # no SO_REUSEADDR: any socket bound to the port refuses it
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_the_port_is_held_from_before_the_model_loads(bundle_path, tmp_path):
    port = free_port()
    env = {**os.environ, "FRUGALML_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "LOAD_DELAY_S": "3"}
    command = [sys.executable, "-c", SLOW_CLI, "serve", bundle_path, "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        # As long as _start allows: the imports before the bind took over 60 s on a busy 2-core machine.
        wait_until(lambda: process.poll() is not None or _port_taken(port), timeout=300, what="port bound")
        assert process.poll() is None, process.communicate()[1]
        # Bound while the model loads (3 s more here), not yet accepting: a client is refused at
        # once rather than left waiting.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        wait_ready(f"http://127.0.0.1:{port}", timeout=120)
        assert httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"inputs": ["hi"]}).status_code == 200
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        _kill(process)
    assert process.returncode == 0


def test_the_api_key_file_keeps_the_key_out_of_the_process_list(bundle_path, tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("s3cret-from-a-file\n")  # as a secret mount writes it
    process, url = _start(bundle_path, "--api-key-file", str(key_file), "--no-access-log", home=tmp_path)
    try:
        command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes()  # what `ps` shows anyone
        body = {"inputs": ["refund please"]}
        refused = httpx.post(f"{url}/v1/predict", json=body)
        good = {"Authorization": "Bearer s3cret-from-a-file"}
        allowed = httpx.post(f"{url}/v1/predict", json=body, headers=good)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        _kill(process)
    assert b"s3cret" not in command_line and str(key_file).encode() in command_line
    assert refused.status_code == 401 and allowed.status_code == 200
    assert "an API key is required" in stderr and "warning" not in stderr


def _run_cli(capsys, *args: str) -> tuple[int, str]:
    from frugalml.cli import app

    try:
        app(list(args), prog_name="frugalml")
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    return code, capsys.readouterr().err


def test_serve_takes_the_api_key_once_from_a_readable_file_and_warns_of_one_on_the_command_line(
    capsys, monkeypatch, tmp_path, home
):
    key_file, empty = tmp_path / "key", tmp_path / "empty"
    key_file.write_text("k3y")
    empty.write_text(" \n")
    # "nope" is no bundle: each of these must fail on the key, before looking for it.
    code, err = _run_cli(capsys, "serve", "nope", "--api-key", "k3y", "--api-key-file", str(key_file))
    assert code == 2 and "give the API key once" in err and "Traceback" not in err
    code, err = _run_cli(capsys, "serve", "nope", "--api-key-file", str(tmp_path / "missing"))
    assert code == 2 and "cannot read --api-key-file" in err and "No such file" in err
    code, err = _run_cli(capsys, "serve", "nope", "--api-key-file", str(empty))
    assert code == 2 and f"--api-key-file {empty} is empty" in err
    monkeypatch.setenv("FRUGALML_API_KEY", "k3y")
    code, err = _run_cli(capsys, "serve", "nope", "--api-key-file", str(key_file))
    assert code == 2 and "give the API key once" in err
    code, err = _run_cli(capsys, "serve", "nope")  # from the environment: no warning
    assert code == 2 and "warning" not in err
    monkeypatch.delenv("FRUGALML_API_KEY")
    code, err = _run_cli(capsys, "serve", "nope", "--api-key", "k3y")  # works, but shows in `ps`
    assert code == 2 and "warning: --api-key shows in the process list" in err


PREDICT = json.dumps({"inputs": ["refund please"]}).encode()
PREDICT_REQUEST = (
    b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(PREDICT), PREDICT)
)


def _answer(connection: socket.socket) -> tuple[int, bool] | None:
    """(status, whether the server closes) of the answer on `connection`; None if it closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").lower().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.startswith("content-length:"))
    while len(body) < length:
        body += connection.recv(65536)
    return int(lines[0].split()[1]), "connection: close" in lines


def _keep_posting(port: int, stop: threading.Event, outcomes: list[tuple[float, str]]) -> None:
    """A client that posts on one keep-alive connection after another until `stop`, noting when
    and how each request ended: a status, "refused" (no connection) or "reset" (no answer)."""
    connection = None
    while not stop.is_set():
        try:
            connection = connection or socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:  # refused, or a SYN left unanswered until the socket closed
            outcomes.append((time.monotonic(), "refused"))
            time.sleep(0.05)
            continue
        try:
            connection.sendall(PREDICT_REQUEST)
            answer = _answer(connection)
        except OSError:
            answer = None
        outcomes.append((time.monotonic(), "reset" if answer is None else str(answer[0])))
        if answer is None or answer[1]:
            connection.close()
            connection = None
    if connection is not None:
        connection.close()


def test_sigterm_with_two_workers_answers_or_refuses_every_request_under_load(bundle_path, tmp_path):
    process, url = _start(bundle_path, "--workers", "2", "--no-access-log", home=tmp_path)
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()
    port = int(url.rsplit(":", 1)[1])
    clients = [threading.Thread(target=_keep_posting, args=(port, stop, outcomes)) for _ in range(16)]
    try:
        for client in clients:
            client.start()
        wait_until(lambda: len(outcomes) >= 200, what="load running")
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        time.sleep(0.5)  # requests sent once it is gone are refused too
    finally:
        stop.set()
        _kill(process)
        for client in clients:
            client.join(30)
    stderr = process.communicate()[1]
    after = collections.Counter(kind for at, kind in outcomes if at >= signalled)
    assert process.returncode == 0, stderr[-2000:]
    # Answered (200 before the drain, 503 during it) or refused before any accept; never reset.
    assert set(after) <= {"200", "503", "refused"} and after["refused"] > 0, after
