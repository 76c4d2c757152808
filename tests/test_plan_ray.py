"""`frugalml plan --execute --backend ray` end to end: a two-node Ray cluster on loopback whose
nodes declare the catalogue rows they stand for as custom resources ("cpu" on the head, "t4" on
the second node); each planned job must run, and succeed, on a node of its planned type."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from test_jobs import WAIT_SECONDS, no_job_left  # noqa: F401
from test_jobs_ray import loopback_cluster
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
    with loopback_cluster({"cpu": 1}, {"t4": 1}) as (address, cpu, t4):
        yield {"address": address, "cpu": cpu, "t4": t4}


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
