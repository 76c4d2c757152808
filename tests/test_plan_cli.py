"""`frugalml plan` as a user runs it: the JSON document, the tables, exit 2 when infeasible."""

from __future__ import annotations

import json

import pytest
import yaml
from test_cli import run_cli

JOBS = {
    "jobs": [
        {"name": "tune-big", "stage": "tune", "work_hours": 40},
        {"name": "tune-40gb", "stage": "tune", "work_hours": 20, "memory_gb": 40},
        {"name": "label-pool", "stage": "label", "work_hours": 10},
        {"name": "eval-cpu", "stage": "eval", "work_hours": 2, "accelerators": ["cpu"]},
        {"name": "compress", "stage": "compress", "work_hours": 6, "accelerators": ["T4", "L4"]},
    ]
}


def jobs_file(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text(yaml.safe_dump(JOBS))
    return path


def test_plan_json_with_the_default_catalogue(capsys, tmp_path):
    code, out, err = run_cli(capsys, "plan", str(jobs_file(tmp_path)), "--deadline", "3", "--json")
    assert code == 0, err
    document = json.loads(out)
    for key in ("feasible", "cost", "makespan_hours", "lower_bound", "solver", "seconds", "assignments"):
        assert key in document
    assert document["feasible"] is True and document["makespan_hours"] <= 3
    assert document["lower_bound"] <= document["cost"] + 1e-9
    rows = document["assignments"]
    assert [row["job"] for row in rows] == [job["name"] for job in JOBS["jobs"]]
    assert list(rows[0]) == ["job", "resource", "machine", "start_hours", "hours", "cost"]
    assert sum(row["cost"] for row in rows) == document["cost"]
    by_job = {row["job"]: row for row in rows}
    assert by_job["eval-cpu"]["resource"] == "cpu"
    assert by_job["compress"]["resource"] in ("t4", "l4")
    assert by_job["tune-40gb"]["resource"] in ("a100", "h100")  # the only types with 40 GB
    names = [row["name"] for row in document["alternatives"]]
    assert names == ["all on the fastest type", "all on the cheapest type", "chosen plan"]


def test_plan_tables_and_budget_mode(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "plan", str(jobs_file(tmp_path)), "--budget", "10")
    assert code == 0
    for text in ("tune-big", "all on the fastest type", "all on the cheapest type", "chosen plan", "gap"):
        assert text in out
    code, out, _ = run_cli(capsys, "plan", str(jobs_file(tmp_path)), "--budget", "10", "--json")
    document = json.loads(out)
    assert document["objective"] == "makespan" and document["cost"] <= 10
    assert document["lower_bound"] <= document["makespan_hours"]


def test_an_infeasible_deadline_exits_2_naming_the_fastest_makespan(capsys, tmp_path):
    # eval-cpu alone takes 2 h on the only type it allows: no plan is faster.
    code, out, err = run_cli(capsys, "plan", str(jobs_file(tmp_path)), "--deadline", "1.5", "--json")
    assert code == 2
    assert json.loads(out) == {
        "feasible": False,
        "message": "no plan finishes within the deadline of 1.5 h: the fastest achievable makespan is 2 h",
        "fastest_makespan_hours": 2.0,
        "cheapest_cost": None,
    }
    assert "fastest achievable makespan is 2 h" in err and len(err.strip().splitlines()) == 1


def test_plan_argument_errors(capsys, tmp_path):
    jobs = str(jobs_file(tmp_path))
    code, _, err = run_cli(capsys, "plan", jobs)
    assert code == 2 and "exactly one of --deadline" in err
    code, _, err = run_cli(capsys, "plan", jobs, "--deadline", "3", "--solver", "magic")
    assert code == 2 and "unknown solver 'magic'" in err
    bad = tmp_path / "catalog.yaml"
    bad.write_text("resources:\n  - {name: x, speed: 1, price_per_hour: 1, count: 1, memory_gb: 8, gpu: 1}\n")
    code, _, err = run_cli(capsys, "plan", jobs, "--catalog", str(bad), "--deadline", "3")
    assert code == 2 and "catalog.yaml: resources[0] (x).gpu: unknown key" in err


def test_execute_needs_every_job_s_args(capsys, tmp_path, home):
    code, _, err = run_cli(capsys, "plan", str(jobs_file(tmp_path)), "--deadline", "3", "--execute")
    assert code == 2 and "these jobs have none: tune-big, tune-40gb, label-pool, eval-cpu, compress" in err


def test_execute_on_ray_needs_the_cluster_s_address(capsys, tmp_path, home):
    from frugalml.jobs import list_jobs

    jobs = tmp_path / "jobs.yaml"
    job = {"name": "help", "stage": "predict", "work_hours": 1, "args": ["--help"]}
    jobs.write_text(yaml.safe_dump({"jobs": [job]}))
    code, _, err = run_cli(capsys, "plan", str(jobs), "--deadline", "3", "--execute", "--backend", "ray")
    assert code == 2 and "--execute --backend ray needs --address" in err
    assert list_jobs() == []  # refused before the first job was submitted


@pytest.mark.slow
def test_execute_runs_the_plan_on_the_local_backend(capsys, tmp_path, home, tiny_base, intent_files):
    from frugalml.jobs import describe, wait

    argv = [str(intent_files["train"]), "--base", str(tiny_base), "--method", "head", "--json"]
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        yaml.safe_dump({"jobs": [{"name": "tiny-tune", "stage": "tune", "work_hours": 2, "args": argv}]})
    )
    code, out, err = run_cli(
        capsys, "plan", str(jobs), "--deadline", "1", "--execute", "--backend", "local", "--json"
    )
    assert code == 0, err
    document = json.loads(out)
    (planned,) = document["assignments"]
    (submitted,) = document["submitted"]
    assert submitted["job"] == "tiny-tune" and submitted["resource"] == planned["resource"]
    finished = wait(submitted["job_id"], timeout=600)
    assert finished["status"] == "succeeded", describe(submitted["job_id"])
    assert finished["name"] == "tiny-tune" and finished["argv"] == ["tune", *argv]
    assert finished["estimated_cost"] == pytest.approx(planned["cost"])
    assert finished["bundles"]  # the tune job produced its bundle
