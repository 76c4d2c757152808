"""Jobs on the local backend: real supervisor and child processes, the real SQLite store.

Each job's command runs as `python -m frugalml ...` in a detached supervisor; the tests kill those
processes with SIGKILL where a machine would lose them, and read what the store recorded.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import run_cli

from frugalml.errors import FrugalError
from frugalml.jobs import JobSpec, cancel, describe, follow, list_jobs, submit, wait
from frugalml.lineage import open_store
from frugalml.processes import pid_alive

WAIT_SECONDS = 300  # a loaded machine starts Python slowly; nothing here is timed


@pytest.fixture(autouse=True)
def no_job_left(home) -> Iterator[None]:
    """However a test ends, it leaves no job (supervisor, child) running behind it."""
    yield
    for job in list_jobs():
        if job["status"] not in ("succeeded", "failed", "cancelled"):
            cancel(job["job_id"])


def _until(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return found


def _running_attempt(job_id: str, number: int) -> dict[str, Any]:
    """The job's attempt `number` once its child process runs."""

    def found() -> dict[str, Any] | None:
        attempts = describe(job_id)["attempts"]
        if len(attempts) >= number and attempts[number - 1]["status"] == "running":
            return attempts[number - 1]
        return None

    return _until(found, f"attempt {number} of {job_id}")


def _tune_argv(files: dict, tiny_base) -> list[str]:
    return ["tune", str(files["train"]), "--eval", str(files["test"]), "--base", str(tiny_base), "--json"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"argv": []}, "needs a command"),
        ({"argv": "tune x.csv"}, "list of words"),
        ({"argv": ["serve", "b1"]}, "cannot run as a job"),
        ({"argv": ["tune", "x.csv"], "cpus": 0}, "cpus"),
        ({"argv": ["tune", "x.csv"], "gpus": -1}, "gpus"),
        ({"argv": ["tune", "x.csv"], "retries": -1}, "retries"),
        ({"argv": ["tune", "x.csv"], "retries": 1.5}, "retries"),
        ({"argv": ["tune", "x.csv"], "price_per_hour": float("nan")}, "price_per_hour"),
        ({"argv": ["tune", "x.csv"], "resources": {"accel_l4": 0}}, "resources[accel_l4]"),
        ({"argv": ["tune", "x.csv"], "resources": {"bad name": 1}}, "bad resource names"),
        ({"argv": ["tune", "x.csv"], "resources": {"GPU": 1}}, "bad resource names"),
        ({"argv": ["tune", "x.csv"], "accelerator_type": "L 4"}, "accelerator type"),
    ],
)
def test_a_bad_spec_is_refused(options, message):
    with pytest.raises(FrugalError, match=message.replace("[", r"\[").replace("]", r"\]")):
        JobSpec(**options)


def test_the_spec_costs_what_its_hours_at_its_price_cost():
    assert JobSpec(["tune", "x.csv"], estimated_hours=1.5, price_per_hour=2.0).estimated_cost == 3.0
    assert JobSpec(["tune", "x.csv"], estimated_hours=1.5).estimated_cost is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--", "serve", "b1"], "cannot run as a job"),
        (["--backend", "slurm", "--", "tune", "x.csv"], "unknown backend 'slurm'"),
        (["--resource", "accel_l4", "--", "tune", "x.csv"], "need --backend ray"),
        (["--address", "127.0.0.1:6379", "--", "tune", "x.csv"], "--address"),
        (["--resource", "accel_l4=many", "--backend", "ray", "--", "tune", "x.csv"], "is a number"),
        (["--cpus", "64", "--", "tune", "x.csv"], "local pool has 2 slots"),
    ],
)
def test_bad_submissions_are_one_line_errors(home, capsys, monkeypatch, args, message):
    monkeypatch.setenv("FRUGALML_JOB_SLOTS", "2")
    code, out, err = run_cli(capsys, "jobs", "submit", *args)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
    assert list_jobs() == []  # nothing recorded


def test_a_bad_slot_count_is_a_one_line_error(home, capsys):
    with pytest.MonkeyPatch.context() as patch:  # undone before no_job_left reads the settings
        patch.setenv("FRUGALML_JOB_SLOTS", "0")
        code, _, err = run_cli(capsys, "jobs", "submit", "--", "predict", "--help")
    assert code == 2 and "FRUGALML_JOB_SLOTS='0'" in err and len(err.strip().splitlines()) == 1


def test_an_unknown_job_is_a_one_line_error(home, capsys):
    for command in ("show", "wait", "cancel", "logs"):
        code, _, err = run_cli(capsys, "jobs", command, "jnope")
        assert code == 2 and "no job 'jnope'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_tune_job_whose_child_is_killed_is_retried_and_registers_its_bundle(
    home, capsys, tiny_base, intent_files
):
    spec = JobSpec(
        _tune_argv(intent_files, tiny_base),
        name="router",
        retries=1,
        backoff_seconds=0.1,
        estimated_hours=0.5,
        price_per_hour=2.0,
    )
    job_id = submit(spec)
    first = _running_attempt(job_id, 1)
    os.kill(first["pid"], signal.SIGKILL)  # the machine loses the worker mid-way

    code, out, _ = run_cli(capsys, "jobs", "wait", job_id, "--json")
    job = json.loads(out)
    assert code == 0 and job["status"] == "succeeded" and job["name"] == "router"
    assert [(a["status"], a["exit_code"]) for a in job["attempts"]] == [("failed", -9), ("succeeded", 0)]
    assert job["attempts"][1]["started_at"] >= job["attempts"][0]["finished_at"]
    assert job["bundle"] in {row["id"] for row in open_store().list_bundles()}
    assert f'"bundle_id": "{job["bundle"]}"' in Path(job["log_path"]).read_text()  # tune's --json
    assert [run["kind"] for run in job["runs"]][-1] == "tune"  # runs record the job that made them
    assert job["estimated_cost"] == 1.0
    assert job["actual_cost"] == pytest.approx(job["seconds"] / 3600 * 2.0)

    code, out, _ = run_cli(capsys, "jobs", "logs", job_id)
    assert code == 0 and "--- attempt 2 ---" in out and job["bundle"] in out
    code, out, _ = run_cli(capsys, "jobs", "list", "--json")
    assert code == 0 and [j["job_id"] for j in json.loads(out)] == [job_id]


def test_a_job_killed_on_every_attempt_fails_with_each_attempt_recorded(home, tiny_base, intent_files):
    job_id = submit(JobSpec(_tune_argv(intent_files, tiny_base), retries=2, backoff_seconds=0.1))
    for number in (1, 2, 3):
        os.kill(_running_attempt(job_id, number)["pid"], signal.SIGKILL)
    job = wait(job_id, timeout=WAIT_SECONDS)
    assert job["status"] == "failed" and job["error"] == "exit status -9"
    assert [(a["attempt"], a["status"], a["exit_code"]) for a in job["attempts"]] == [
        (1, "failed", -9),
        (2, "failed", -9),
        (3, "failed", -9),
    ]


def test_a_user_error_is_not_retried(home, capsys):
    code, out, _ = run_cli(
        capsys, "jobs", "submit", "--retries", "3", "--wait", "--json", "--", "predict", "--no-such-option"
    )
    job = json.loads(out)
    assert code == 1 and job["status"] == "failed"
    assert [(a["status"], a["exit_code"]) for a in job["attempts"]] == [("failed", 2)]
    assert "No such option" in Path(job["log_path"]).read_text()


def test_a_job_whose_supervisor_is_killed_ends_failed_and_its_child_stopped(home, tiny_base, intent_files):
    job_id = submit(JobSpec(_tune_argv(intent_files, tiny_base), retries=3))
    child = _running_attempt(job_id, 1)["pid"]
    os.kill(_job_row(job_id)["pid"], signal.SIGKILL)  # the row names the job's supervisor

    job = _until(lambda: (j := describe(job_id))["status"] != "running" and j, "the job to end")
    assert job["status"] == "failed" and "supervisor process" in job["error"]
    assert job["attempts"][0]["status"] == "failed"
    _until(lambda: not pid_alive(child), "the orphaned child to stop")


def test_a_queued_job_whose_supervisor_is_killed_ends_failed(home, monkeypatch, tiny_base, intent_files):
    monkeypatch.setenv("FRUGALML_JOB_SLOTS", "1")
    running = submit(JobSpec(_tune_argv(intent_files, tiny_base)))
    queued = submit(JobSpec(["predict", "--help"]))
    _running_attempt(running, 1)
    os.kill(_job_row(queued)["pid"], signal.SIGKILL)
    job = _until(lambda: (j := describe(queued))["status"] != "queued" and j, "the queued job to end")
    assert job["status"] == "failed" and job["attempts"] == [] and "supervisor process" in job["error"]


def test_doctor_finds_and_fixes_a_job_whose_supervisor_died(home, capsys):
    job_id = submit(JobSpec(["predict", "--help"]))
    os.kill(_job_row(job_id)["pid"], signal.SIGKILL)  # before it could start the command

    code, out, _ = run_cli(capsys, "doctor", "--json")
    assert code == 0 and json.loads(out)["dead_jobs"] == [job_id] and not json.loads(out)["clean"]
    assert _job_row(job_id)["status"] == "queued"  # a report changes nothing
    code, out, _ = run_cli(capsys, "doctor", "--fix", "--json")
    assert code == 0 and json.loads(out)["dead_jobs"] == [job_id]
    assert _job_row(job_id)["status"] == "failed"
    assert json.loads(run_cli(capsys, "doctor", "--json")[1])["clean"]


def _job_row(job_id: str) -> dict[str, Any]:
    from frugalml.jobs.store import JobStore

    return JobStore().get(job_id)


def test_cancel_stops_a_running_job_and_a_queued_one_never_starts(
    home, capsys, monkeypatch, tiny_base, intent_files
):
    monkeypatch.setenv("FRUGALML_JOB_SLOTS", "1")
    running = submit(JobSpec(_tune_argv(intent_files, tiny_base)))
    queued = submit(JobSpec(["predict", "--help"]))
    child = _running_attempt(running, 1)["pid"]
    assert describe(queued)["status"] == "queued"  # one slot, taken

    code, out, _ = run_cli(capsys, "jobs", "cancel", queued, "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"
    code, out, _ = run_cli(capsys, "jobs", "cancel", running, "--json")
    job = json.loads(out)
    assert code == 0 and job["status"] == "cancelled"
    assert job["attempts"][0]["status"] == "cancelled"
    _until(lambda: not pid_alive(child), "the cancelled child to stop")
    assert describe(queued)["attempts"] == [] and describe(queued)["status"] == "cancelled"
    code, _, _ = run_cli(capsys, "jobs", "wait", running)
    assert code == 1  # wait's exit status says it did not succeed


def test_jobs_wait_for_cpu_slots(home, monkeypatch):
    monkeypatch.setenv("FRUGALML_JOB_SLOTS", "2")
    wide = submit(JobSpec(["predict", "--help"], cpus=2))
    narrow = [submit(JobSpec(["predict", "--help"])) for _ in range(2)]
    jobs = [wait(job_id, timeout=WAIT_SECONDS) for job_id in (wide, *narrow)]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    # The 2-CPU job held both slots: the others started after it ended, in submission order.
    assert jobs[1]["started_at"] >= jobs[0]["finished_at"] and jobs[2]["started_at"] >= jobs[0]["finished_at"]
    assert "Usage" in Path(jobs[0]["log_path"]).read_text()


def test_submit_prints_the_job_id_and_show_tells_its_story(home, capsys):
    code, out, _ = run_cli(capsys, "jobs", "submit", "--name", "helper", "--", "predict", "--help")
    job_id = out.strip()
    assert code == 0 and job_id.startswith("j")
    wait(job_id, timeout=WAIT_SECONDS)
    code, out, _ = run_cli(capsys, "jobs", "show", job_id[:6], "--json")
    job = json.loads(out)
    assert code == 0 and job["job_id"] == job_id and job["status"] == "succeeded"
    assert job["argv"] == ["predict", "--help"] and job["bundle"] is None and job["actual_cost"] is None
    assert job["seconds"] > 0 and job["queued_seconds"] >= 0
    code, out, _ = run_cli(capsys, "jobs", "show", job_id)
    assert code == 0 and "succeeded" in out and "helper" in out
    code, out, _ = run_cli(capsys, "jobs", "logs", job_id, "--follow")
    assert code == 0 and "Usage" in out


def test_logs_follow_a_job_from_before_it_starts_to_its_end(home):
    job_id = submit(JobSpec(["predict", "--help"]))
    text = "".join(follow(job_id))  # no attempt yet when it starts reading
    assert "Usage" in text and describe(job_id)["status"] == "succeeded"


def test_a_run_records_the_job_it_belongs_to(home, monkeypatch):
    lineage = open_store()
    with lineage.run("tune", {}) as outside:
        pass
    monkeypatch.setenv("FRUGALML_JOB_ID", "jtest0000001")
    with lineage.run("tune", {}) as inside:
        pass
    assert lineage.get_run(outside.id)["job_id"] is None
    assert lineage.get_run(inside.id)["job_id"] == "jtest0000001"


def test_a_cancel_after_the_last_attempt_succeeded_keeps_the_success(home):
    from frugalml.jobs.store import JobStore

    store = JobStore()
    late, early = (store.add(JobSpec(["predict", "--help"]), "local", None, str(home)) for _ in range(2))
    started = {"event": "attempt_started", "attempt": 1, "pid": 1, "host": "h", "node": "n", "at": 0.0}
    for job_id, status in ((late, "succeeded"), (early, "cancelled")):
        store.apply(job_id, started)
        store.apply(
            job_id, {"event": "attempt_finished", "attempt": 1, "status": status, "exit_code": 0, "at": 1.0}
        )
    assert store.interrupted_outcome(late) == ("succeeded", None)
    assert store.interrupted_outcome(early) == ("cancelled", "cancelled")
