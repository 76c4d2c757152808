"""Run the app under uvicorn: one process, or several workers sharing one socket.

Workers are fresh interpreters (uvicorn spawns them); each rebuilds the app from a JSON spec in
the environment and loads the bundles itself. Their metrics meet in PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.supervisors import Multiprocess

from frugalml.monitor.alerting import AlertingConfig
from frugalml.monitor.metrics import MULTIPROC_ENV, multiprocess_registry
from frugalml.serve.config import ServeConfig
from frugalml.serve.connections import ServerConfig
from frugalml.serve.listener import drain_accept_queue, stop_new_connections, wait_for_accept_queue
from frugalml.ui import quiet_libraries

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from frugalml.bundle import Bundle

SPEC_ENV = "FRUGALML_SERVE_SPEC"


@dataclass
class ServeSpec:
    """What to serve: (name, bundle folder) pairs, the settings, threads per model call,
    threads for a call that runs alone (PyTorch: see TorchPredictor; ONNX Runtime: the size of
    the session's intra-op pool, which calls side by side share), and the device the models run
    on (frugalml.devices)."""

    models: list[tuple[str, str]]
    config: ServeConfig = field(default_factory=ServeConfig)
    threads: int | None = None
    lone_threads: int | None = None
    device: str = "cpu"
    fault: str | None = None  # tests only: serve/faults.py

    def to_json(self) -> str:
        return json.dumps(
            {
                "models": self.models,
                "config": asdict(self.config),
                "threads": self.threads,
                "lone_threads": self.lone_threads,
                "device": self.device,
                "fault": self.fault,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        data = json.loads(text)
        models = [(name, path) for name, path in data["models"]]
        return cls(
            models,
            ServeConfig(**data["config"]),
            data["threads"],
            data["lone_threads"],
            data["device"],
            data["fault"],
        )


def serving_predictor(
    bundle: Bundle | str, threads: int | None = None, lone_threads: int | None = None, device: str = "cpu"
):
    """The predictor `frugalml serve` runs for `bundle` (or the bundle in that folder) on `device`."""
    from frugalml.bundle import TEXT_TASK, load_bundle
    from frugalml.runtime import load_predictor

    if isinstance(bundle, str):
        bundle = load_bundle(bundle)
    options: dict = {"threads": threads} if threads else {}
    if bundle.format == "torch" and bundle.task == TEXT_TASK:
        options["jit"] = True  # on a CPU, a traced forward leaves the GIL to the event loop (TorchPredictor)
        if lone_threads:
            options["lone_threads"] = lone_threads
    elif lone_threads:
        # An ONNX Runtime session has one intra-op pool, shared by the calls that run at once: sized
        # for a call running alone, it lets that call use every core while the other slot is idle.
        options["threads"] = lone_threads
    return load_predictor(bundle, device=device, **options)


def build_app(spec: ServeSpec):
    from frugalml.serve.app import create_app
    from frugalml.serve.faults import Fault, FaultyPredictor

    predictors = [
        (name, serving_predictor(path, spec.threads, spec.lone_threads, spec.device))
        for name, path in spec.models
    ]
    if spec.fault:
        fault = Fault.parse(spec.fault)
        predictors = [(name, FaultyPredictor(predictor, fault)) for name, predictor in predictors]
    return create_app(predictors, spec.config)


@contextmanager
def alerting(
    config: AlertingConfig | None, served: list[str], collect: Callable[[], CollectorRegistry]
) -> Iterator[None]:
    """The embedded alert evaluator over `collect()` while the block runs, recording alerts in the
    lineage store and posting them to `config.notify_url`."""
    if config is None:
        yield
        return
    from frugalml.lineage import open_store
    from frugalml.monitor.alerting import AlertLoop, Evaluator, check_models, load_rules
    from frugalml.monitor.notify import WebhookNotifier

    rules = load_rules(config.rules_path)
    check_models(rules, served)
    store = open_store(reconcile=False)
    notifier = WebhookNotifier(config.notify_url) if config.notify_url else None

    def record(alert) -> None:
        assert alert.started_at is not None  # recorded once it fires
        store.record_alert(
            alert.fingerprint, alert.labels, alert.annotations, alert.value, alert.started_at, alert.ended_at
        )

    evaluator = Evaluator(
        rules,
        collect,
        notify=notifier.send if notifier else lambda alert: None,
        record=record,
        resend_s=config.resend_s,
    )
    loop = AlertLoop(evaluator, config.interval_s).start()
    try:
        yield
    finally:
        loop.stop()
        if notifier is not None:
            notifier.close()


def app_from_env():
    """uvicorn factory for worker processes."""
    quiet_libraries()  # a worker is a fresh interpreter: the CLI's settings did not carry over
    return build_app(ServeSpec.from_json(os.environ[SPEC_ENV]))


def log_config(access_log: bool) -> dict:
    """uvicorn's own logs at warning; the JSON access lines (already JSON) as they are."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(message)s"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "frugalml.serve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "frugalml.access": {
                "handlers": ["stderr"],
                "level": "INFO" if access_log else "WARNING",
                "propagate": False,
            },
        },
    }


class DrainingServer(uvicorn.Server):
    """uvicorn's graceful shutdown, plus readiness false at once, no queued connection reset, and
    exit status 0 on SIGTERM."""

    def handle_exit(self, sig, frame) -> None:
        lifecycle = getattr(getattr(self.config.app, "state", None), "lifecycle", None)
        if lifecycle is not None:  # also reached off the main thread, unlike signal handlers
            lifecycle.draining = True
        super().handle_exit(sig, frame)

    def run(self, sockets=None) -> None:
        # uvicorn re-raises the signal that stopped it once it has drained. A drain is a clean
        # stop, so that re-raised SIGTERM meets a no-op handler and the process exits 0.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: None)
        super().run(sockets=sockets)

    async def shutdown(self, sockets=None) -> None:
        # uvicorn closes the listening socket at once, resetting the connections still queued on it.
        await drain_accept_queue([sock for server in self.servers for sock in server.sockets])
        await super().shutdown(sockets=sockets)


WORKER_HEALTHCHECK_S = 60


class WorkerSupervisor(Multiprocess):
    """uvicorn's supervisor of worker processes, letting go of the shared socket cleanly.

    The supervisor holds the socket too: were it to keep it open while the workers close theirs,
    the kernel would go on completing connections that no worker accepts, and reset them all when
    the supervisor exits. So on SIGTERM or SIGINT it stops new connections at once (in every
    process: the socket is one), waits for the workers to accept what is queued, lets go of its
    copy, and only then asks the workers to drain.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stopping_connections(signal.getsignal(sig)))

    def _stopping_connections(self, queue_signal):
        def handler(signum, frame) -> None:
            for sock in self.sockets:
                stop_new_connections(sock)
            queue_signal(signum, frame)

        return handler

    def terminate_all(self) -> None:
        wait_for_accept_queue(self.sockets)
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def serve(
    spec: ServeSpec,
    listener: socket.socket,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    drain_s: float = 30,
    alerts: AlertingConfig | None = None,
) -> None:
    """Serve `spec` on `listener`, a socket bound to host:port (which uvicorn only reports)."""
    options = {
        "host": host,
        "port": port,
        "log_config": log_config(spec.config.access_log),
        "access_log": False,
        "timeout_graceful_shutdown": drain_s,
        "server_header": False,
    }
    served = [name for name, _ in spec.models]
    if workers <= 1:
        app = build_app(spec)
        with alerting(alerts, served, app.state.alert_registry):
            DrainingServer(ServerConfig(app, spec.config, **options)).run(sockets=[listener])
        return
    own_dir = not os.environ.get(MULTIPROC_ENV)
    if own_dir:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="frugalml-metrics-")
    os.environ[SPEC_ENV] = spec.to_json()
    try:
        # Workers run uvicorn's own Server; their apps chain onto its signal handlers to drain.
        # uvicorn restarts a worker that misses its health ping (5 s by default); a worker that
        # imports torch and loads its model on busy cores can miss it and be restarted over and over.
        config = ServerConfig(
            "frugalml.serve.runner:app_from_env",
            spec.config,
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
            **options,
        )
        with alerting(alerts, served, multiprocess_registry):  # here, not in each worker
            WorkerSupervisor(config, sockets=[listener]).run()
    finally:
        if own_dir:
            shutil.rmtree(os.environ.pop(MULTIPROC_ENV), ignore_errors=True)
