"""`frugalml plan --execute --backend ray` end to end: a two-node Ray cluster on loopback whose
nodes declare the catalogue rows they stand for as custom resources ("cpu" on the head, "t4" on
the second node); each planned job must run, and succeed, on a node of its planned type."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import yaml
from test_jobs import WAIT_SECONDS, no_job_left  # noqa: F401
from test_plan_cli import run_cli

from frugalml.jobs import describe, wait

pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'frugalml[ray]'")

# The t4 row runs tune four times faster at the same price: "fast" (2 h of work) fits the 1.5 h
# deadline only there, and "slow" may only use the cpu row.
CATALOG = {
    "reference": "cpu",
    "resources": [
        {"name": "cpu", "speed": 1.0, "price_per_hour": 1.0, "count": 1, "memory_gb": 8},
        {"name": "t4", "accelerator": "T4", "speed": {"default": 1.0, "tune": 4.0}, "price_per_hour": 1.0,
         "count": 1, "memory_gb": 8},
    ],
}  # fmt: skip


@pytest.fixture
def typed_cluster() -> Iterator[dict[str, str]]:
    """A head node declaring {"cpu": 1} and a second node declaring {"t4": 1}, both on 127.0.0.1
    with one CPU: the address and each type's node id."""
    from ray.cluster_utils import Cluster

    loopback = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's addresses are 127.0.0.1, not eth0's
    saved = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "RAY_AUTH_MODE", loopback)}
    temp = tempfile.mkdtemp(prefix="frp-", dir="/tmp")  # short: Ray's socket paths live under it
    os.environ.update({"RAY_TMPDIR": temp, "RAY_AUTH_MODE": "disabled", loopback: "0"})
    common = {"node_ip_address": "127.0.0.1", "num_cpus": 1}
    cluster = Cluster(
        initialize_head=True, head_node_args={**common, "include_dashboard": False, "resources": {"cpu": 1}}
    )
    try:
        t4 = cluster.add_node(**common, resources={"t4": 1})
        cluster.wait_for_nodes()
        yield {"address": cluster.address, "cpu": cluster.head_node.node_id, "t4": t4.node_id}
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.mark.slow
def test_execute_runs_each_job_on_a_ray_node_of_its_planned_type(
    capsys, tmp_path, home, typed_cluster, tiny_base, intent_files
):
    argv = [str(intent_files["train"]), "--base", str(tiny_base), "--method", "head", "--json"]
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        yaml.safe_dump(
            {
                "jobs": [
                    {"name": "slow", "stage": "tune", "work_hours": 1, "accelerators": ["cpu"], "args": argv},
                    {"name": "fast", "stage": "tune", "work_hours": 2, "args": argv},
                ]
            }
        )
    )
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(CATALOG))
    code, out, err = run_cli(
        capsys, "plan", str(jobs), "--catalog", str(catalog), "--deadline", "1.5",
        "--execute", "--backend", "ray", "--address", typed_cluster["address"], "--json",
    )  # fmt: skip
    assert code == 0, err
    document = json.loads(out)
    planned = {row["job"]: row for row in document["assignments"]}
    assert {name: row["resource"] for name, row in planned.items()} == {"slow": "cpu", "fast": "t4"}
    submitted = {row["job"]: row for row in document["submitted"]}
    assert {name: row["resource"] for name, row in submitted.items()} == {"slow": "cpu", "fast": "t4"}
    for name, row in submitted.items():
        job = wait(row["job_id"], timeout=WAIT_SECONDS)
        assert job["status"] == "succeeded", describe(row["job_id"])
        assert job["backend"] == "ray" and job["name"] == name and job["argv"] == ["tune", *argv]
        assert [a["node"] for a in job["attempts"]] == [typed_cluster[row["resource"]]]
        assert job["attempts"][0]["exit_code"] == 0 and job["bundles"]
        assert job["estimated_cost"] == pytest.approx(planned[name]["cost"])
