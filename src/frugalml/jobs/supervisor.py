"""Run one job where its supervisor runs (this machine, or a Ray node): attempts with back-off.

Each attempt is a child `python -m frugalml <argv>` in its own session, with FRUGALML_JOB_ID and
FRUGALML_JOB_ATTEMPT in its environment (so the runs it records name the job, and a stage can
find what an earlier attempt left). Everything the supervisor observes it reports as events
(`emit`): an attempt started (pid, host, node), wrote to its log, ended (exit code). The local
backend writes them to the store at once; the Ray backend sends them back to the driver.
"""

from __future__ import annotations

import codecs
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from frugalml.jobs.spec import JobSpec
from frugalml.jobs.store import kill_group
from frugalml.lineage import JOB_ID_ENV

Emit = Callable[[dict[str, Any]], None]
USER_ERROR = 2  # the CLI's exit status for bad input: the same input fails again, so no retry
MAX_BACKOFF_SECONDS = 300.0
STOP_GRACE_SECONDS = 10.0  # how long a stopped attempt may take to clean up before SIGKILL


def run_attempts(
    spec: JobSpec, job_id: str, *, cwd: str, node: str, emit: Emit, first: int = 1
) -> tuple[str, int]:
    """Run the job's command until an attempt succeeds or none is left: ('succeeded' or 'failed',
    the last attempt's exit status). An interrupt (KeyboardInterrupt: SIGTERM in a supervisor,
    ray.cancel in a Ray task) stops the running attempt, records it `cancelled` and propagates."""
    for attempt in range(first, spec.retries + 2):
        code = _attempt(spec, job_id, attempt, cwd=cwd, node=node, emit=emit)
        if code == 0:
            return "succeeded", code
        if code == USER_ERROR or attempt > spec.retries:
            return "failed", code
        time.sleep(backoff_seconds(spec, attempt))
    raise AssertionError("unreachable: the last attempt returns")


def backoff_seconds(spec: JobSpec, failed_attempt: int) -> float:
    """The wait after attempt `failed_attempt` failed: doubled after each failure, capped."""
    return min(spec.backoff_seconds * 2 ** (failed_attempt - 1), MAX_BACKOFF_SECONDS)


def child_env(spec: JobSpec, job_id: str, attempt: int) -> dict[str, str]:
    env = {**os.environ, JOB_ID_ENV: job_id, "FRUGALML_JOB_ATTEMPT": str(attempt), "PYTHONUNBUFFERED": "1"}
    threads = str(max(1, math.floor(spec.cpus)))  # a job computes on the CPUs it was given
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, threads)
    return env


def _attempt(spec: JobSpec, job_id: str, attempt: int, *, cwd: str, node: str, emit: Emit) -> int:
    child = subprocess.Popen(
        [sys.executable, "-m", "frugalml", *spec.argv],
        cwd=cwd if os.path.isdir(cwd) else None,
        env=child_env(spec, job_id, attempt),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it stops what it started
    )
    host = socket.gethostname()
    started = {"attempt": attempt, "pid": child.pid, "host": host, "node": node, "at": time.time()}
    emit({"event": "attempt_started", **started})
    reader = threading.Thread(target=_forward_output, args=(child, attempt, emit), daemon=True)
    reader.start()
    try:
        code = _wait(child)
        reader.join()  # the log is whole before the attempt is recorded ended
    except BaseException:
        _stop(child)
        reader.join(timeout=STOP_GRACE_SECONDS)
        emit(_finished(attempt, "cancelled", child.returncode))
        raise
    emit(_finished(attempt, "succeeded" if code == 0 else "failed", code))
    return code


def _wait(child: subprocess.Popen) -> int:
    """The child's exit status. Waits in short steps: an exception sent to this thread (ray.cancel
    delivers a KeyboardInterrupt so) lands between them, where a blocking wait would never see it."""
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue


def _forward_output(child: subprocess.Popen, attempt: int, emit: Emit) -> None:
    assert child.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := os.read(child.stdout.fileno(), 65536):
        emit({"event": "log", "attempt": attempt, "text": decoder.decode(chunk)})
    if tail := decoder.decode(b"", final=True):
        emit({"event": "log", "attempt": attempt, "text": tail})
    child.stdout.close()


def _finished(attempt: int, status: str, code: int | None) -> dict[str, Any]:
    return {
        "event": "attempt_finished",
        "attempt": attempt,
        "status": status,
        "exit_code": code,
        "at": time.time(),
    }


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM (`jobs cancel`) raises KeyboardInterrupt, as Ctrl-C would."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM (a frugalml stage records its run failed and removes half-written bundles), then
    SIGKILL if it is still there after the grace period."""
    kill_group(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        kill_group(child.pid, signal.SIGKILL)
        child.wait()
