"""Jobs on the Ray backend: a Ray instance the job starts and stops, and a two-node Ray cluster on
loopback whose second node has a custom resource standing for an accelerator type."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_cli import run_cli
from test_jobs import WAIT_SECONDS, _running_attempt, _tune_argv, no_job_left  # noqa: F401

from frugalml.jobs import JobSpec, cancel, describe, submit, wait
from frugalml.lineage import open_store
from frugalml.processes import pid_alive

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'frugalml[ray]'")


@contextmanager
def loopback_cluster(head: dict[str, float], second: dict[str, float]) -> Iterator[tuple[str, str, str]]:
    """A two-node Ray cluster on 127.0.0.1, one CPU each, the head and the second node declaring
    these custom resources: (address, head node id, second node id). Stopped and cleaned after."""
    from ray.cluster_utils import Cluster

    loopback = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's addresses are 127.0.0.1, not eth0's
    saved = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "RAY_AUTH_MODE", loopback)}
    # A private temp dir: the cluster's address file lands there, not where another ray.init()
    # looks; short, as Ray's socket paths live under it.
    temp = tempfile.mkdtemp(prefix="frt-", dir="/tmp")
    os.environ.update({"RAY_TMPDIR": temp, "RAY_AUTH_MODE": "disabled", loopback: "0"})
    common = {"node_ip_address": "127.0.0.1", "num_cpus": 1}
    cluster = Cluster(
        initialize_head=True, head_node_args={**common, "include_dashboard": False, "resources": head}
    )
    try:
        node = cluster.add_node(**common, resources=second)
        cluster.wait_for_nodes()
        yield cluster.address, cluster.head_node.node_id, node.node_id
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, str, str]]:
    # "accelerator_type:L4" is the resource a node with an L4 GPU declares by itself.
    with loopback_cluster({}, {"accel_l4": 1, "accelerator_type:L4": 1}) as nodes:
        yield nodes


@pytest.mark.slow
def test_a_job_runs_on_a_ray_instance_it_starts_and_stops(home, capsys, tiny_base, intent_files):
    code, out, _ = run_cli(
        capsys,
        "jobs",
        "submit",
        "--backend",
        "ray",
        "--wait",
        "--json",
        "--",
        *_tune_argv(intent_files, tiny_base),
    )
    job = json.loads(out)
    assert code == 0 and job["status"] == "succeeded" and job["backend"] == "ray"
    assert job["bundle"] in {row["id"] for row in open_store().list_bundles()}  # recorded in this home
    assert job["bundle"] in Path(job["log_path"]).read_text()  # the log came back from the task
    assert job["node"] and job["attempts"][0]["exit_code"] == 0
    assert not Path(f"/tmp/fr-{job['job_id']}").exists()  # the instance's files, gone with it


@pytest.mark.slow
def test_a_job_asking_for_a_resource_runs_on_the_node_that_has_it(home, cluster):
    address, head, accel = cluster
    anywhere = submit(JobSpec(["predict", "--help"]), backend="ray", address=address)
    on_l4 = submit(JobSpec(["predict", "--help"], resources={"accel_l4": 1}), backend="ray", address=address)
    l4_type = submit(JobSpec(["predict", "--help"], accelerator_type="L4"), backend="ray", address=address)
    jobs = [wait(job_id, timeout=WAIT_SECONDS) for job_id in (anywhere, on_l4, l4_type)]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    assert jobs[1]["node"] == accel and jobs[2]["node"] == accel and jobs[0]["node"] in {head, accel}
    assert "Usage" in Path(jobs[1]["log_path"]).read_text()
    assert ray.is_initialized() is False  # the drivers ran in their own processes


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "missing"),
    [(["--resource", "accel_h100"], "accel_h100=1"), (["--gpus", "1"], "GPU=1"), (["--cpus", "2"], "CPU=2")],
)
def test_a_resource_no_node_has_fails_at_once(home, capsys, cluster, options, missing):
    address, _, _ = cluster
    code, out, _ = run_cli(
        capsys, "jobs", "submit", "--backend", "ray", "--address", address, *options,
        "--wait", "--json", "--", "predict", "--help",
    )  # fmt: skip
    job = json.loads(out)
    assert code == 1 and job["status"] == "failed" and job["attempts"] == []
    assert "no node of the Ray cluster has" in job["error"] and missing in job["error"]


@pytest.mark.slow
def test_a_ray_job_is_retried_and_cancelled(home, cluster, tiny_base, intent_files):
    address, _, accel = cluster
    spec = JobSpec(
        _tune_argv(intent_files, tiny_base), resources={"accel_l4": 1}, retries=3, backoff_seconds=0.1
    )
    job_id = submit(spec, backend="ray", address=address)
    first = _running_attempt(job_id, 1)
    assert first["node"] == accel
    os.kill(first["pid"], signal.SIGKILL)
    second = _running_attempt(job_id, 2)
    # Frozen, the tiny tune cannot finish before the cancel lands (it did on quiet machines).
    os.killpg(second["pid"], signal.SIGSTOP)

    job = cancel(job_id)
    assert job["status"] == "cancelled"
    assert [a["status"] for a in job["attempts"]] == ["failed", "cancelled"]
    assert job["attempts"][0]["exit_code"] == -9
    assert not pid_alive(second["pid"])
    assert describe(job_id)["status"] == "cancelled"


@pytest.mark.slow
def test_a_job_whose_ray_worker_is_killed_is_retried_in_a_new_task(home, cluster, tiny_base, intent_files):
    address, _, accel = cluster
    spec = JobSpec(
        _tune_argv(intent_files, tiny_base), resources={"accel_l4": 1}, retries=1, backoff_seconds=0.1
    )
    job_id = submit(spec, backend="ray", address=address)
    child = _running_attempt(job_id, 1)["pid"]
    worker = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent
    os.kill(worker, signal.SIGKILL)  # the Ray worker running the job's supervisor is lost

    job = wait(job_id, timeout=WAIT_SECONDS)
    assert job["status"] == "succeeded"
    assert [(a["status"], a["exit_code"]) for a in job["attempts"]] == [("failed", None), ("succeeded", 0)]
    assert job["attempts"][1]["node"] == accel and job["bundle"] is not None
    assert not pid_alive(child)  # the command the lost worker left was stopped
