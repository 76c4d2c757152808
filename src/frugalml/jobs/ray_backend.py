"""The Ray backend: the job's supervisor runs as a Ray task on a node that has its resources.

The job's detached process is the Ray driver. Without an address it starts a Ray instance on this
machine and stops it when the job ends; with one it connects to that cluster. The job's `cpus`,
`gpus`, `resources` and `accelerator_type` become the task's num_cpus, num_gpus, custom resources
and accelerator_type, so Ray places it on a node that has them. The task runs the same attempt
loop as the local backend (supervisor.run_attempts) and sends its events (attempts, exit codes,
log text) back through a Ray queue; the driver records them here, so the logs come back to the
job's log path. `jobs cancel` signals the driver, which cancels the task with ray.cancel: the
attempt is stopped as Ctrl-C would stop it, then by force after a grace period.

The command runs with this machine's FRUGALML_HOME: on a multi-machine cluster, give it a path
every node shares, so the bundles and runs the job records land in this store.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from typing import Any

from frugalml.errors import FrugalError, first_line
from frugalml.jobs.spec import JobSpec
from frugalml.jobs.store import JobStore, open_supervised
from frugalml.jobs.supervisor import STOP_GRACE_SECONDS, backoff_seconds, interrupt_on_sigterm, run_attempts
from frugalml.settings import Settings

POLL_SECONDS = 0.2


def check(spec: JobSpec, address: str | None, settings: Settings) -> None:
    if importlib.util.find_spec("ray") is None:
        raise FrugalError("the ray backend needs Ray: pip install 'frugalml[ray]'")


def supervise(job_id: str) -> None:
    """Drive one job through Ray: connect or start, place the task, record its events, stop."""
    import ray

    settings, store, job, spec = open_supervised(job_id)
    temp_dir = f"/tmp/fr-{job_id}"  # short: Ray's socket paths live under it
    outcome: tuple[str, str | None] = ("failed", "the Ray driver stopped unexpectedly")
    with interrupt_on_sigterm():
        try:
            try:
                _connect(ray, job["address"], temp_dir)
                with interrupt_on_sigterm():  # again: ray.init installs a handler of its own
                    _check_placement(ray, spec)
                    status, code = _drive(ray, store, job, spec, settings)
                outcome = (status, "" if status == "succeeded" else f"exit status {code}")
            except KeyboardInterrupt:
                outcome = store.interrupted_outcome(job_id)
            except FrugalError as exc:
                outcome = ("failed", first_line(exc))
            except Exception as exc:
                outcome = ("failed", first_line(exc))
                raise
            finally:
                ray.shutdown()  # stops an instance it started; leaves a cluster it joined running
                shutil.rmtree(temp_dir, ignore_errors=True)
        finally:  # recorded last: a job that has ended holds no Ray resources any more
            store.finish(job_id, outcome[0], outcome[1] or None)


def _connect(ray: Any, address: str | None, temp_dir: str) -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # "local": a new instance here, even where a cluster's address file names another
        ray.init(address="local", include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)


def _needs(spec: JobSpec) -> dict[str, float]:
    needs = {"CPU": spec.cpus, "GPU": spec.gpus, **spec.resources}
    if spec.accelerator_type:
        needs[f"accelerator_type:{spec.accelerator_type}"] = 0.001  # how Ray asks for a type
    return {name: amount for name, amount in needs.items() if amount}


def _check_placement(ray: Any, spec: JobSpec) -> None:
    """Fail at once, rather than wait forever, when no node of the cluster could ever run it."""
    needs = _needs(spec)
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    if not any(all(have.get(name, 0) >= amount for name, amount in needs.items()) for have in nodes):
        shown = ", ".join(f"{name}={amount:g}" for name, amount in needs.items())
        raise FrugalError(f"no node of the Ray cluster has {shown} (its nodes have {nodes})")


def _drive(
    ray: Any, store: JobStore, job: dict[str, Any], spec: JobSpec, settings: Settings
) -> tuple[str, int]:
    """Run the job's attempts as Ray tasks. A task whose worker or node is lost (kill -9, the
    node gone, Ray's memory monitor) loses the attempt it ran: it is recorded failed, and the
    attempts left run in a new task after the back-off, on whatever node Ray picks then."""
    from ray.exceptions import NodeDiedError, OutOfMemoryError, TaskCancelledError, WorkerCrashedError
    from ray.util.queue import Queue

    events = Queue(actor_options={"num_cpus": 0})
    task = ray.remote(run_on_node).options(
        num_cpus=spec.cpus,
        num_gpus=spec.gpus,
        resources=spec.resources,
        accelerator_type=spec.accelerator_type,
        max_retries=0,  # retries are the job's: its attempts, with back-off, recorded
        runtime_env={"env_vars": {"FRUGALML_HOME": str(settings.home)}},
    )
    first = 1
    while True:
        ref = task.remote(spec.to_json(), job["id"], job["cwd"], events, first)
        try:
            _pump(ray, ref, events, store, job["id"])
        except KeyboardInterrupt:
            ray.cancel(ref)  # a KeyboardInterrupt in the task: it stops the attempt and records it
            if not _pump(ray, ref, events, store, job["id"], timeout=STOP_GRACE_SECONDS + 10):
                ray.cancel(ref, force=True)
            raise
        finally:
            _drain(events, store, job["id"])
        try:
            return ray.get(ref)
        except TaskCancelledError as exc:
            raise KeyboardInterrupt() from exc
        except (WorkerCrashedError, NodeDiedError, OutOfMemoryError) as exc:
            store.stop_running_attempts(job["id"], "failed")
            used = len(store.attempts(job["id"]))
            if used > spec.retries:
                raise FrugalError(
                    f"the Ray worker running attempt {used} was lost: {first_line(exc)}"
                ) from exc
            time.sleep(backoff_seconds(spec, used))
            first = used + 1


def _pump(
    ray: Any, ref: Any, events: Any, store: JobStore, job_id: str, timeout: float | None = None
) -> bool:
    """Record the task's events until it ends (True) or `timeout` seconds pass (False)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        done, _ = ray.wait([ref], timeout=POLL_SECONDS)
        _drain(events, store, job_id)
        if done:
            return True
    return False


def _drain(events: Any, store: JobStore, job_id: str) -> None:
    count = events.qsize()
    for event in events.get_nowait_batch(count) if count else []:
        if event["event"] == "attempt_started":
            store.start(job_id)  # running from its first attempt on; queued while Ray places it
        store.apply(job_id, event)


def run_on_node(spec_json: dict[str, Any], job_id: str, cwd: str, events: Any, first: int) -> tuple[str, int]:
    """The Ray task: the job's attempts from number `first` on, on the node Ray chose, reporting
    through `events`."""
    import ray

    spec = JobSpec(**spec_json)
    node = ray.get_runtime_context().get_node_id()
    return run_attempts(spec, job_id, cwd=cwd, node=node, emit=events.put, first=first)
