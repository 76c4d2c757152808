"""The lineage store: one SQLite file recording datasets, runs, bundles, jobs and cached pipeline steps.

Every arrow of the data flow is a row here (which bundle came from which data, run and parent),
so `frugalml models show ID` can tell a bundle's whole history. A stage records its work as

    with lineage.run("tune", config, data_sha256) as run:
        ...
        run.summary = {...}   # kept as the run's metrics when the block ends without an error
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frugalml.bundle import Bundle, load_bundle
from frugalml.errors import BundleError
from frugalml.processes import pid_alive
from frugalml.settings import Settings, get_settings

if TYPE_CHECKING:  # pandas, which reading data needs, is slow to import: `models list` needs none
    from frugalml.data.dataset import LabelledRows

JOB_ID_ENV = "FRUGALML_JOB_ID"  # the job whose attempt this process is, if any

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    sha256 TEXT PRIMARY KEY, source TEXT, rows INTEGER, labels INTEGER, registered_at TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, kind TEXT, status TEXT, config TEXT, data_sha256 TEXT,
    metrics TEXT, started_at TEXT, finished_at TEXT, pid INTEGER, host TEXT, job_id TEXT);
CREATE TABLE IF NOT EXISTS bundles (
    id TEXT PRIMARY KEY, name TEXT, path TEXT, format TEXT, precision TEXT, method TEXT,
    base_model TEXT, parent_id TEXT, run_id TEXT, data_sha256 TEXT, size_bytes INTEGER,
    metrics TEXT, created_at TEXT);
CREATE TABLE IF NOT EXISTS steps (
    key TEXT PRIMARY KEY, kind TEXT, outputs TEXT, created_at TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, name TEXT, spec TEXT, backend TEXT, address TEXT, status TEXT,
    cpus REAL, gpus REAL, cwd TEXT, submitted REAL, started REAL, finished REAL,
    pid INTEGER, host TEXT, error TEXT);
CREATE TABLE IF NOT EXISTS job_attempts (
    job_id TEXT, attempt INTEGER, status TEXT, pid INTEGER, host TEXT, node TEXT,
    exit_code INTEGER, started REAL, finished REAL, log_path TEXT, PRIMARY KEY (job_id, attempt));
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, fingerprint TEXT, alertname TEXT, model TEXT, status TEXT, value REAL,
    labels TEXT, annotations TEXT, started_at TEXT, ended_at TEXT, host TEXT, pid INTEGER);
"""


def run_path(path: str | Path | None) -> str:
    """A file path as run configs record it: absolute, so lineage holds from any folder."""
    return str(Path(path).resolve()) if path else ""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Run:
    """A run in progress: its id, and the summary recorded when it ends well."""

    id: str
    summary: dict[str, Any] = field(default_factory=dict)


class LineageStore:
    """A thin layer over one SQLite file; every call opens its own short transaction."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(SCHEMA)
            _add_missing_columns(db)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _write(self, sql: str, params: tuple) -> None:
        with closing(self._connect()) as db, db:
            db.execute(sql, params)

    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        with closing(self._connect()) as db:
            return [_decode(dict(r)) for r in db.execute(sql, params).fetchall()]

    # datasets and runs
    def add_dataset(self, dataset: LabelledRows) -> str:
        labels = len(set(dataset.labels)) if dataset.labels is not None else 0
        self._write(
            "INSERT OR IGNORE INTO datasets VALUES (?,?,?,?,?)",
            (dataset.sha256, dataset.source, len(dataset), labels, _now()),
        )
        return dataset.sha256

    @contextmanager
    def run(
        self, kind: str, config: dict[str, Any], data_sha256: str = "", resume: str | None = None
    ) -> Iterator[Run]:
        """Record a run of `kind`: `done` with `run.summary` when the block ends, `failed` when it
        raises (Ctrl-C and SIGTERM included). With `resume`, that unfinished run continues in this
        process instead of a new one starting."""
        run = Run(self.reopen_run(resume) if resume else self.start_run(kind, config, data_sha256))
        try:
            yield run
        except BaseException:
            self.finish_run(run.id, "failed")
            raise
        self.finish_run(run.id, "done", run.summary)

    def start_run(self, kind: str, config: dict[str, Any], data_sha256: str = "") -> str:
        run_id = "r" + uuid.uuid4().hex[:11]
        self._write(
            "INSERT INTO runs (id, kind, status, config, data_sha256, metrics, started_at, pid, host, "
            "job_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                run_id,
                kind,
                "running",
                json.dumps(config, default=str),
                data_sha256,
                "{}",
                _now(),
                os.getpid(),
                socket.gethostname(),
                os.environ.get(JOB_ID_ENV),  # set when a job's supervisor started this process
            ),
        )
        return run_id

    def reopen_run(self, run_id: str) -> str:
        """Mark an unfinished run `running` again, in this process (a resumed `tune`)."""
        self._write(
            "UPDATE runs SET status='running', metrics='{}', finished_at=NULL, pid=?, host=? WHERE id=?",
            (os.getpid(), socket.gethostname(), run_id),
        )
        return run_id

    def finish_run(self, run_id: str, status: str, metrics: dict[str, Any] | None = None) -> None:
        self._write(
            "UPDATE runs SET status=?, metrics=?, finished_at=? WHERE id=?",
            (status, json.dumps(metrics or {}, default=str), _now(), run_id),
        )

    def dead_runs(self) -> list[str]:
        """Runs still marked `running` whose process on this machine has ended."""
        rows = self._rows(
            "SELECT id, pid FROM runs WHERE status='running' AND pid IS NOT NULL AND host=?",
            (socket.gethostname(),),
        )
        return [row["id"] for row in rows if not pid_alive(row["pid"])]

    def fail_dead_runs(self) -> list[str]:
        """Mark the dead runs `failed`; returns their ids."""
        dead = self.dead_runs()
        for run_id in dead:
            self.finish_run(run_id, "failed", {"error": "its process ended without finishing the run"})
        return dead

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM runs WHERE id=?", (run_id,))
        return rows[0] if rows else None

    # bundles
    def add_bundle(self, bundle: Bundle, run_id: str = "", data_sha256: str = "") -> None:
        bundle_path = bundle.path
        assert bundle_path is not None  # a written or loaded bundle has its folder
        self._write(
            "INSERT INTO bundles VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                bundle.id,
                bundle.name,
                str(bundle_path.resolve()),
                bundle.format,
                bundle.precision,
                bundle.method,
                bundle.base_model,
                bundle.parents[0] if bundle.parents else None,
                run_id,
                data_sha256,
                bundle.size_bytes,
                json.dumps(bundle.metrics),
                bundle.created_at,
            ),
        )

    def update_bundle_metrics(self, bundle_id: str, metrics: dict[str, Any]) -> None:
        """Add `metrics` to a registered bundle's (figures measured after it was registered)."""
        with closing(self._connect()) as db, db:
            row = db.execute("SELECT metrics FROM bundles WHERE id=?", (bundle_id,)).fetchone()
            if row is None:
                raise BundleError(f"no bundle {bundle_id!r} in the lineage store at {self.path}")
            merged = {**json.loads(row["metrics"] or "{}"), **metrics}
            db.execute("UPDATE bundles SET metrics=? WHERE id=?", (json.dumps(merged), bundle_id))

    def list_bundles(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM bundles ORDER BY created_at, rowid")

    def find_bundle(self, ref: str) -> dict[str, Any]:
        """The bundle whose id is `ref` or starts with it (a unique prefix)."""
        if not ref:
            raise BundleError("an empty bundle reference names no bundle")
        # A plain prefix comparison: with LIKE, '%' and '_' in `ref` would match any bundle.
        rows = self._rows("SELECT * FROM bundles WHERE substr(id, 1, length(?)) = ?", (ref, ref))
        if not rows:
            raise BundleError(f"no bundle {ref!r} in the lineage store at {self.path}")
        if len(rows) > 1:
            raise BundleError(f"bundle prefix {ref!r} is ambiguous: {[r['id'] for r in rows]}")
        return rows[0]

    def remove_bundle(self, ref: str) -> dict[str, Any]:
        row = self.find_bundle(ref)
        children = self._rows("SELECT id FROM bundles WHERE parent_id=?", (row["id"],))
        if children:
            raise BundleError(
                f"bundle {row['id']} is the parent of {[c['id'] for c in children]}; remove those first"
            )
        self._write("DELETE FROM bundles WHERE id=?", (row["id"],))
        shutil.rmtree(row["path"], ignore_errors=True)
        return row

    def lineage(self, ref: str) -> list[dict[str, Any]]:
        """The bundle, then its parent, grandparent ...; each with its run and dataset."""
        chain: list[dict[str, Any]] = []
        row: dict[str, Any] | None = self.find_bundle(ref)
        while row is not None:
            row["run"] = self.get_run(row["run_id"]) if row["run_id"] else None
            datasets = self._rows("SELECT * FROM datasets WHERE sha256=?", (row["data_sha256"],))
            row["dataset"] = datasets[0] if datasets else None
            # The file this run read; the dataset's `source` is the first file seen with that content.
            run_data = ((row["run"] or {}).get("config") or {}).get("train")
            row["data_path"] = run_data or (row["dataset"] or {}).get("source")
            chain.append(row)
            parent = row["parent_id"]
            rows = self._rows("SELECT * FROM bundles WHERE id=?", (parent,)) if parent else []
            row = rows[0] if rows else None
        return chain

    # pipeline step cache
    def cached_step(self, key: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT outputs FROM steps WHERE key=?", (key,))
        return rows[0]["outputs"] if rows else None

    def cache_step(self, key: str, kind: str, outputs: dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO steps VALUES (?,?,?,?)",
            (key, kind, json.dumps(outputs, default=str), _now()),
        )

    # alerts (the embedded evaluator's)
    def record_alert(
        self,
        fingerprint: str,
        labels: dict[str, str],
        annotations: dict[str, str],
        value: float,
        started_at: float,
        ended_at: float | None = None,
    ) -> None:
        """Record an alert episode as it fires (`ended_at` None) and again when it resolves; an
        episode is its labels' fingerprint and its start."""
        started = datetime.fromtimestamp(started_at, UTC).isoformat(timespec="seconds")
        ended = datetime.fromtimestamp(ended_at, UTC).isoformat(timespec="seconds") if ended_at else None
        self._write(
            "INSERT OR REPLACE INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                f"{fingerprint}-{started_at:.3f}",
                fingerprint,
                labels.get("alertname", ""),
                labels.get("model", ""),
                "firing" if ended_at is None else "resolved",
                value,
                json.dumps(labels),
                json.dumps(annotations),
                started,
                ended,
                socket.gethostname(),
                os.getpid(),
            ),
        )

    def list_alerts(self) -> list[dict[str, Any]]:
        """Every recorded alert, newest first; one still `firing` whose server process has ended is
        shown as `unknown` (nobody is watching it any more)."""
        rows = self._rows("SELECT * FROM alerts ORDER BY started_at DESC, rowid DESC")
        here = socket.gethostname()
        for row in rows:
            if row["status"] == "firing" and row["host"] == here and not pid_alive(row["pid"]):
                row["status"] = "unknown"
        return rows


LEGACY_NAME = "registry.sqlite"  # the store's file name in homes made by frugalml 0.1
_reconciled: set[Path] = set()  # stores whose dead runs this process has marked already


def open_store(settings: Settings | None = None, *, reconcile: bool = True) -> LineageStore:
    """The lineage store under FRUGALML_HOME (a home with the older file name keeps its history).
    With `reconcile`, runs whose process died (kill -9) are marked failed first, once a process:
    a run that starts later was started by a live process."""
    path = (settings or get_settings()).lineage_path
    legacy = path.with_name(LEGACY_NAME)
    if legacy.exists() and not path.exists():
        for suffix in ("-wal", "-shm", ""):  # the write-ahead log holds committed rows too
            old = legacy.with_name(legacy.name + suffix)
            if old.exists():
                old.rename(path.with_name(path.name + suffix))
    lineage = LineageStore(path)
    if reconcile and path not in _reconciled:
        lineage.fail_dead_runs()
        _reconciled.add(path)
    return lineage


def resolve_bundle(ref: str | Path, store: LineageStore | None = None, verify: bool = True) -> Bundle:
    """Load a bundle given its folder or its id (or unique id prefix) in the lineage store."""
    path = Path(ref)
    if path.is_dir():
        return load_bundle(path, verify=verify)
    if store is None:
        raise BundleError(f"{ref}: no such bundle folder")
    return load_bundle(store.find_bundle(str(ref))["path"], verify=verify)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Columns added since a store was created (CREATE TABLE IF NOT EXISTS keeps old tables)."""
    present = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
    for column, kind in (("pid", "INTEGER"), ("host", "TEXT"), ("job_id", "TEXT")):
        if column not in present:
            db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("config", "metrics", "outputs", "labels", "annotations"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row
