"""Jobs and their attempts, in the lineage store's SQLite file (tables `jobs` and `job_attempts`).

A job is `queued` until a slot frees, then `running`, and ends `succeeded`, `failed` or
`cancelled`; the first final status written wins. Each attempt is one child process with its own
log. The process that supervises a job (its pid and host are on the job's row) is the only
writer of its attempts; `reconcile` marks the jobs whose supervisor died `failed` and stops the
child it left, so no job stays `running` without a process behind it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time
import uuid
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

from frugalml.errors import FrugalError
from frugalml.jobs.spec import JobSpec
from frugalml.lineage import open_store
from frugalml.processes import pid_alive
from frugalml.settings import Settings, get_settings

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = frozenset(STATUSES[2:])


def open_supervised(job_id: str) -> tuple[Settings, JobStore, dict[str, Any], JobSpec]:
    """Where a job's supervisor starts, whatever its backend: the settings, the store, the job's row
    and spec; the supervisor's pid is recorded on the job (`jobs cancel` signals it)."""
    settings = get_settings()
    store = JobStore(settings)
    job = store.get(job_id)
    store.set_pid(job_id, os.getpid())
    return settings, store, job, store.spec(job)


class JobStore:
    def __init__(self, settings: Settings | None = None, *, reconcile_runs: bool = True):
        settings = settings or get_settings()
        # Opening the lineage store creates the tables, or adds those a store lacks.
        self.path = open_store(settings, reconcile=reconcile_runs).path
        self.jobs_dir = settings.jobs_dir

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _write(self, sql: str, params: tuple) -> int:
        with closing(self._connect()) as db, db:
            return db.execute(sql, params).rowcount

    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        with closing(self._connect()) as db:
            return [dict(row) for row in db.execute(sql, params).fetchall()]

    def add(self, spec: JobSpec, backend: str, address: str | None, cwd: str) -> str:
        job_id = "j" + uuid.uuid4().hex[:11]
        self._write(
            "INSERT INTO jobs (id, name, spec, backend, address, status, cpus, gpus, cwd, submitted, host) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                job_id,
                spec.name or spec.argv[0],
                json.dumps(spec.to_json()),
                backend,
                address,
                "queued",
                spec.cpus,
                spec.gpus,
                cwd,
                time.time(),
                socket.gethostname(),
            ),
        )
        return job_id

    def get(self, ref: str) -> dict[str, Any]:
        """The job whose id is `ref` or starts with it (a unique prefix)."""
        if not ref:
            raise FrugalError("an empty job reference names no job")
        rows = self._rows("SELECT * FROM jobs WHERE substr(id, 1, length(?)) = ?", (ref, ref))
        if not rows:
            raise FrugalError(f"no job {ref!r} in the lineage store at {self.path}")
        if len(rows) > 1:
            raise FrugalError(f"job prefix {ref!r} is ambiguous: {[r['id'] for r in rows]}")
        return rows[0]

    def spec(self, job: dict[str, Any]) -> JobSpec:
        return JobSpec(**json.loads(job["spec"]))

    def all_jobs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM jobs ORDER BY submitted, rowid")

    def set_pid(self, job_id: str, pid: int) -> None:
        self._write("UPDATE jobs SET pid=?, host=? WHERE id=?", (pid, socket.gethostname(), job_id))

    def start(self, job_id: str) -> bool:
        """Mark a queued job running; False when it is no longer queued (cancelled meanwhile)."""
        return bool(
            self._write(
                "UPDATE jobs SET status='running', started=? WHERE id=? AND status='queued'",
                (time.time(), job_id),
            )
        )

    def finish(self, job_id: str, status: str, error: str | None = None) -> bool:
        """Give a job its final status unless it has one already; True when this call set it."""
        assert status in FINAL
        return bool(
            self._write(
                "UPDATE jobs SET status=?, finished=?, error=? "
                "WHERE id=? AND status IN ('queued', 'running')",
                (status, time.time(), error, job_id),
            )
        )

    def interrupted_outcome(self, job_id: str) -> tuple[str, str | None]:
        """The final status of a job whose supervisor `jobs cancel` interrupted: `succeeded` when
        its last attempt had already succeeded (the cancel came too late to stop anything)."""
        attempts = self.attempts(job_id)
        if attempts and attempts[-1]["status"] == "succeeded":
            return "succeeded", None
        return "cancelled", "cancelled"

    def claim_slot(self, job_id: str, slots: int) -> bool:
        """Start the job if it is the oldest queued local job of this machine and its CPUs fit in
        the `slots` that running local jobs leave free (first come, first served)."""
        with closing(self._connect()) as db, db:
            db.execute("BEGIN IMMEDIATE")  # one claim at a time: two jobs never take the same slot
            rows = db.execute(
                "SELECT id, status, cpus, pid FROM jobs WHERE backend='local' AND host=? "
                "AND status IN ('queued', 'running') ORDER BY submitted, rowid",
                (socket.gethostname(),),
            ).fetchall()
            live = [r for r in rows if r["pid"] is None or pid_alive(r["pid"])]  # None: just submitted
            used = sum(r["cpus"] for r in live if r["status"] == "running")
            waiting = [r for r in live if r["status"] == "queued"]
            if not waiting or waiting[0]["id"] != job_id or used + waiting[0]["cpus"] > slots:
                return False
            db.execute("UPDATE jobs SET status='running', started=? WHERE id=?", (time.time(), job_id))
            return True

    # attempts
    def log_path(self, job_id: str, attempt: int) -> Path:
        return self.jobs_dir / job_id / f"attempt-{attempt}.log"

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM job_attempts WHERE job_id=? ORDER BY attempt", (job_id,))

    def apply(self, job_id: str, event: dict[str, Any]) -> None:
        """Record what a supervisor reported: an attempt started, wrote to its log, or ended."""
        kind, attempt = event["event"], event["attempt"]
        path = self.log_path(job_id, attempt)
        if kind == "log":
            with path.open("a", encoding="utf-8") as log:
                log.write(event["text"])
        elif kind == "attempt_started":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            self._write(
                "INSERT OR REPLACE INTO job_attempts "
                "(job_id, attempt, status, pid, host, node, started, log_path) VALUES (?,?,?,?,?,?,?,?)",
                (
                    job_id,
                    attempt,
                    "running",
                    event["pid"],
                    event["host"],
                    event["node"],
                    event["at"],
                    str(path),
                ),
            )
        elif kind == "attempt_finished":
            self._write(
                "UPDATE job_attempts SET status=?, exit_code=?, finished=? WHERE job_id=? AND attempt=?",
                (event["status"], event["exit_code"], event["at"], job_id, attempt),
            )
        else:
            raise ValueError(f"unknown job event {kind!r}")

    # what a job produced
    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT id, kind, status, started_at, finished_at FROM runs WHERE job_id=? "
            "ORDER BY started_at, rowid",
            (job_id,),
        )

    def bundles(self, job_id: str) -> list[str]:
        rows = self._rows(
            "SELECT b.id FROM bundles b JOIN runs r ON b.run_id = r.id WHERE r.job_id=? "
            "ORDER BY b.created_at, b.rowid",
            (job_id,),
        )
        return [row["id"] for row in rows]

    def dead_jobs(self) -> list[dict[str, Any]]:
        """Unfinished jobs of this machine whose supervisor process has ended (kill -9, power
        loss): each row's id and the supervisor's pid."""
        rows = self._rows(
            "SELECT id, pid FROM jobs WHERE status IN ('queued', 'running') AND pid IS NOT NULL AND host=?",
            (socket.gethostname(),),
        )
        return [row for row in rows if not pid_alive(row["pid"])]

    def reconcile(self) -> list[str]:
        """Mark the dead jobs `failed`, stopping the attempt each left running; returns their ids."""
        dead = self.dead_jobs()
        for row in dead:
            self.abandon(row["id"], "failed", f"its supervisor process (pid {row['pid']}) ended unexpectedly")
        return [row["id"] for row in dead]

    def abandon(self, job_id: str, status: str, error: str) -> bool:
        """End a job its supervisor no longer runs: stop the attempt it left (on this machine),
        record that attempt `status` and the job `status`; True when this call ended the job."""
        self.stop_running_attempts(job_id, status)
        return self.finish(job_id, status, error)

    def stop_running_attempts(self, job_id: str, status: str) -> None:
        """Record the job's attempts still `running` as `status` (their supervisor is gone), and
        kill the commands they left on this machine."""
        host = socket.gethostname()
        for attempt in self.attempts(job_id):
            if attempt["status"] != "running":
                continue
            if attempt["host"] == host and pid_alive(attempt["pid"]):
                kill_group(attempt["pid"], signal.SIGKILL)
            self._write(
                "UPDATE job_attempts SET status=?, finished=? WHERE job_id=? AND attempt=?",
                (status, time.time(), job_id, attempt["attempt"]),
            )


def kill_group(pid: int, signum: int) -> None:
    """Signal process `pid` and the processes it started (it leads its own session)."""
    with suppress(ProcessLookupError, PermissionError):  # gone already, or not ours
        os.killpg(pid, signum)
