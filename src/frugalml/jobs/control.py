"""Submit, inspect, wait for, cancel and follow jobs: the public API behind `frugalml jobs`.

from frugalml.jobs import JobSpec, submit
job_id = submit(JobSpec(["tune", "train.csv", "--method", "lora"], retries=2), backend="ray")
"""

from __future__ import annotations

import codecs
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from frugalml.errors import FrugalError
from frugalml.jobs.backends import BACKENDS
from frugalml.jobs.spec import JobSpec
from frugalml.jobs.store import FINAL, JobStore
from frugalml.processes import pid_alive
from frugalml.settings import Settings, get_settings

POLL_SECONDS = 0.25
CANCEL_WAIT_SECONDS = 30.0  # how long a cancelled job's supervisor may take to stop its attempt


def submit(spec: JobSpec, *, backend: str = "local", address: str | None = None) -> str:
    """Queue the job on `backend` (`address`: a Ray cluster's, for 'ray'); returns its id at once.
    A detached process sees it through, so the job outlives the caller."""
    if backend not in BACKENDS:
        raise FrugalError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    settings = get_settings()
    BACKENDS[backend].check(spec, address, settings)
    store = JobStore(settings)
    job_id = store.add(spec, backend, address, os.getcwd())
    store.set_pid(job_id, _detach(job_id, settings))
    return job_id


def _detach(job_id: str, settings: Settings) -> int:
    folder = settings.jobs_dir / job_id
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FRUGALML_HOME": str(settings.home)}
    with (folder / "supervisor.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "frugalml.jobs", job_id],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # not stopped by the terminal's Ctrl-C or the caller's exit
        )
    return process.pid


def describe(ref: str) -> dict[str, Any]:
    """A job's status, attempts, timings, log path, the bundles it produced and its cost."""
    store = JobStore()
    store.reconcile()
    return _describe(store, store.get(ref))


def _describe(store: JobStore, job: dict[str, Any]) -> dict[str, Any]:
    spec = store.spec(job)
    attempts = [_attempt_json(a) for a in store.attempts(job["id"])]
    started, finished = job["started"], job["finished"]
    seconds = ((finished or time.time()) - started) if started else None
    actual_hours = seconds / 3600 if seconds is not None else None
    bundles = store.bundles(job["id"])
    return {
        "job_id": job["id"],
        "name": job["name"],
        "status": job["status"],
        "backend": job["backend"],
        "address": job["address"],
        "argv": spec.argv,
        "cpus": spec.cpus,
        "gpus": spec.gpus,
        "resources": spec.resources,
        "accelerator_type": spec.accelerator_type,
        "retries": spec.retries,
        "attempts": attempts,
        "submitted_at": _iso(job["submitted"]),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "queued_seconds": (started or finished or time.time()) - job["submitted"],
        "seconds": seconds,
        "log_path": attempts[-1]["log_path"] if attempts else None,
        "node": attempts[-1]["node"] if attempts else None,
        "bundle": bundles[-1] if bundles else None,
        "bundles": bundles,
        "runs": store.runs(job["id"]),
        "error": job["error"],
        "estimated_hours": spec.estimated_hours,
        "price_per_hour": spec.price_per_hour,
        "estimated_cost": spec.estimated_cost,
        "actual_hours": actual_hours,
        "actual_cost": actual_hours * spec.price_per_hour
        if actual_hours is not None and spec.price_per_hour is not None
        else None,
    }


def list_jobs() -> list[dict[str, Any]]:
    store = JobStore()
    store.reconcile()
    return [_describe(store, job) for job in store.all_jobs()]


def wait(ref: str, *, timeout: float | None = None) -> dict[str, Any]:
    """Block until the job ends; its description. FrugalError after `timeout` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while (job := describe(ref))["status"] not in FINAL:
        if deadline is not None and time.monotonic() > deadline:
            raise FrugalError(f"job {job['job_id']} is still {job['status']} after {timeout:g} s")
        time.sleep(POLL_SECONDS)
    return job


def cancel(ref: str) -> dict[str, Any]:
    """Stop a job: a queued one never starts; a running one's attempt is stopped (SIGTERM to its
    supervisor, which stops the attempt as Ctrl-C would, then SIGKILL after a grace period)."""
    store = JobStore()
    store.reconcile()
    job = store.get(ref)
    if job["status"] in FINAL:
        return describe(job["id"])
    supervisor_here = job["pid"] and job["host"] == socket.gethostname() and pid_alive(job["pid"])
    if job["status"] == "queued":
        store.finish(job["id"], "cancelled", "cancelled before it started")
    if supervisor_here:
        os.kill(job["pid"], signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while pid_alive(job["pid"]) and time.monotonic() < deadline:  # it records, cleans up, exits
            time.sleep(POLL_SECONDS)
        if pid_alive(job["pid"]):  # stuck (e.g. still connecting to a cluster): stopped by force
            os.kill(job["pid"], signal.SIGKILL)
    store.abandon(job["id"], "cancelled", "cancelled")  # what a stuck or dead supervisor left
    return describe(job["id"])


def follow(ref: str, *, attempt: int | None = None, keep_following: bool = True) -> Iterator[str]:
    """The job's log text: every attempt's in turn (or only `attempt`'s), as it is written, until
    the job ends (or only what is there now, without `keep_following`)."""
    store = JobStore()
    job_id = store.get(ref)["id"]
    current, offset = attempt or 1, 0
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        store.reconcile()
        ended = store.get(job_id)["status"] in FINAL or not keep_following  # read before the log
        path = store.log_path(job_id, current)
        if path.exists():
            with path.open("rb") as log:
                log.seek(offset)
                data = log.read()
            offset += len(data)
            if text := decoder.decode(data):
                yield text
        if attempt is None and store.log_path(job_id, current + 1).exists():
            current, offset = current + 1, 0
            decoder.reset()
            yield f"--- attempt {current} ---\n"
            continue
        if ended:
            return
        time.sleep(POLL_SECONDS)


def _attempt_json(row: dict[str, Any]) -> dict[str, Any]:
    started, finished = row["started"], row["finished"]
    return {
        "attempt": row["attempt"],
        "status": row["status"],
        "exit_code": row["exit_code"],
        "pid": row["pid"],
        "host": row["host"],
        "node": row["node"],
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "seconds": (finished - started) if started and finished else None,
        "log_path": row["log_path"],
    }


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
