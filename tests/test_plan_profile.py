"""`frugalml profile`: a real stage measured on two samples of its data, written into JOBS.yaml."""

from __future__ import annotations

import json

import pytest
import yaml
from test_plan_cli import run_cli

from frugalml.plan.profile import ProfileResult, record_job
from frugalml.plan.spec import load_catalog, load_jobs


def result(work_hours: float) -> ProfileResult:
    return ProfileResult("tune", ["train.csv"], 100, [], 1.0, 0.01, "cpu", 1.0, work_hours)


def test_record_job_appends_and_updates_keeping_constraints(tmp_path):
    path = tmp_path / "jobs.yaml"
    record_job(path, name="a", result=result(2.0))
    path.write_text(path.read_text().replace("work_hours: 2.0", "work_hours: 2.0\n  memory_gb: 40"))
    record_job(path, name="b", result=result(3.0))
    record_job(path, name="a", result=result(5.0))
    jobs = load_jobs(path, load_catalog())
    assert [(job.name, job.work_hours, job.memory_gb) for job in jobs] == [("a", 5.0, 40), ("b", 3.0, None)]
    assert jobs[0].args == ("train.csv",)


def test_profile_needs_the_data_among_the_stage_arguments(capsys, tmp_path):
    code, _, err = run_cli(capsys, "profile", "tune", "--data", "train.csv", "--", "other.csv")
    assert code == 2 and "is none of the stage's arguments" in err


@pytest.mark.slow
def test_profile_tune_on_samples_writes_work_hours(capsys, tiny_base, intent_files, home, tmp_path):
    train = str(intent_files["train"])
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(yaml.safe_dump({"jobs": [{"name": "other", "stage": "eval", "work_hours": 1}]}))
    stage_args = [train, "--base", str(tiny_base), "--method", "head", "--epochs", "1"]
    code, out, err = run_cli(
        capsys,
        "profile",
        "tune",
        "--data",
        train,
        "--sample-rows",
        "20",
        "--jobs",
        str(jobs),
        "--name",
        "tune-intents",
        "--json",
        "--",
        *stage_args,
    )
    assert code == 0, err
    report = json.loads(out)
    assert [s["rows"] for s in report["samples"]] == [10, 20]
    assert all(s["seconds"] > 0 for s in report["samples"])
    assert report["rows"] == 60 and report["machine"] == "cpu" and report["speed"] == 1.0
    expected = (report["fixed_seconds"] + report["seconds_per_row"] * 60) / 3600
    assert report["work_hours"] == pytest.approx(expected)
    written = load_jobs(jobs, load_catalog())
    assert [job.name for job in written] == ["other", "tune-intents"]
    assert written[1].stage == "tune" and written[1].args == tuple(stage_args)
    assert written[1].work_hours == pytest.approx(report["work_hours"], rel=1e-4)

    code, _, err = run_cli(capsys, "profile", "eval", "--data", train, "--", "no-such-bundle", train)
    assert code == 2 and "`frugalml eval` failed on the sample" in err
