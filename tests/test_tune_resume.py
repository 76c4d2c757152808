"""`frugalml tune` killed with SIGKILL after a checkpoint, then `--resume RUN_ID`: the bundle's
predictions equal those of a run that was never interrupted, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_rows, write_csv

from frugalml.bundle import load_bundle
from frugalml.data import load_dataset
from frugalml.runtime import load_predictor

CLI = "import sys; from frugalml.cli import app; app(sys.argv[1:], prog_name='frugalml')"


def tune_command(tiny_base: Path, train: Path, *extra: str) -> list[str]:
    """A fine-tuning run long enough (2 epochs of 135 steps) to be killed in the middle."""
    return [
        sys.executable, "-c", CLI, "tune", str(train), "--method", "full", "--base", str(tiny_base),
        "--epochs", "2", "--batch-size", "8", "--lr", "5e-3", "--checkpoint-every", "20", "--json", *extra,
    ]  # fmt: skip


def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "FRUGALML_HOME": str(home), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def wait_for_checkpoint(folder: Path, process: subprocess.Popen, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob("*/step-*.ckpt"))
        if found:
            return found[0]
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.02)
    raise TimeoutError(f"no checkpoint in {folder}")


def predictions(bundle_path: str, texts: list[str]) -> np.ndarray:
    return load_predictor(load_bundle(bundle_path)).predict_proba(texts)


@pytest.fixture
def long_data(tmp_path) -> dict[str, Path]:
    return {
        "train": write_csv(tmp_path / "train.csv", make_rows(400, seed=1)),
        "test": write_csv(tmp_path / "test.csv", make_rows(8, seed=2)),
    }


@pytest.mark.slow
def test_a_killed_tune_resumes_and_ends_with_the_uninterrupted_predictions(tiny_base, long_data, tmp_path):
    home = tmp_path / "home"
    command = tune_command(tiny_base, long_data["train"])
    killed = subprocess.Popen(
        command, env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    checkpoint = wait_for_checkpoint(home / "checkpoints", killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (home / "bundles").exists() or not any((home / "bundles").iterdir())
    run_id = checkpoint.parent.name.removeprefix("run-")
    other = subprocess.run(
        [*tune_command(tiny_base, long_data["train"], "--seed", "1"), "--resume", run_id],
        env=cli_env(home), capture_output=True, text=True,
    )  # fmt: skip
    assert other.returncode == 2 and "other settings (seed)" in other.stderr

    resumed = subprocess.run(
        [*command, "--resume", run_id], env=cli_env(home), capture_output=True, text=True, check=True
    )
    summary = json.loads(resumed.stdout)
    assert summary["run_id"] == run_id and summary["resumed_from_step"] >= 20
    assert not checkpoint.parent.exists()  # the run is done: its checkpoints are gone

    plain = subprocess.run(
        command, env=cli_env(tmp_path / "plain-home"), capture_output=True, text=True, check=True
    )
    texts = load_dataset(long_data["test"]).texts
    expected = predictions(json.loads(plain.stdout)["bundle_path"], texts)
    np.testing.assert_array_equal(predictions(summary["bundle_path"], texts), expected)

    again = subprocess.run([*command, "--resume", run_id], env=cli_env(home), capture_output=True, text=True)
    assert again.returncode == 2 and "nothing to resume" in again.stderr


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        ("nothing", "no tune run 'rmissing'"),
        ("no checkpoint", "left no intact checkpoint"),
        ("finished", "nothing to resume"),
    ],
)
def test_resume_refuses_what_it_cannot_continue(tiny_base, intent_files, home, prepare, message):
    """A run that does not exist, one killed before its first checkpoint, one that finished."""
    from dataclasses import asdict

    from frugalml.lineage import open_store, run_path
    from frugalml.tune import TuneConfig

    run_id = "rmissing"
    if prepare != "nothing":  # the run as `tune` records it, with these settings and data
        config = TuneConfig(method="full", base=str(tiny_base), epochs=2, batch_size=8, lr=5e-3)
        recorded = {**asdict(config), "train": run_path(intent_files["train"]), "eval": ""}
        store = open_store()
        run_id = store.start_run("tune", recorded, load_dataset(intent_files["train"]).sha256)
        store.finish_run(run_id, "failed" if prepare == "no checkpoint" else "done")
    command = tune_command(tiny_base, intent_files["train"], "--resume", run_id)
    out = subprocess.run(command, env=cli_env(home), capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_a_job_whose_tune_worker_is_killed_resumes_from_the_job_checkpoint(
    tiny_base, long_data, home, tmp_path
):
    """`frugalml jobs submit --retries 1 --wait -- tune ...`: the first attempt's child is killed
    with SIGKILL after its first checkpoint; the retry continues the same run from the job's
    checkpoint and ends with the predictions of a run that was never interrupted."""
    from frugalml.jobs import describe
    from frugalml.lineage import open_store

    tune_argv = tune_command(tiny_base, long_data["train"])[3:]  # after `python -c CLI`
    submit = [
        sys.executable,
        "-c",
        CLI,
        "jobs",
        "submit",
        "--retries",
        "1",
        "--wait",
        "--json",
        "--",
        *tune_argv,
    ]
    waiting = subprocess.Popen(
        submit, env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    checkpoint = wait_for_checkpoint(home / "checkpoints", waiting)
    job_id = checkpoint.parent.name.removeprefix("job-")
    first = describe(job_id)["attempts"][0]
    os.kill(first["pid"], signal.SIGKILL)  # the machine loses the worker mid-way
    out, err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, err[-3000:]
    job = json.loads(out)
    assert [(a["status"], a["exit_code"]) for a in job["attempts"]] == [("failed", -9), ("succeeded", 0)]
    runs = [run for run in job["runs"] if run["kind"] == "tune"]
    assert len(runs) == 1 and runs[0]["status"] == "done"  # the retry continued the first attempt's run
    summary = open_store().get_run(runs[0]["id"])["metrics"]
    assert summary["resumed_from_step"] >= 20 and summary["bundle_id"] == job["bundle"]
    assert not checkpoint.parent.exists()

    plain = subprocess.run(
        tune_command(tiny_base, long_data["train"]),
        env=cli_env(tmp_path / "plain-home"), capture_output=True, text=True, check=True,
    )  # fmt: skip
    texts = load_dataset(long_data["test"]).texts
    expected = predictions(json.loads(plain.stdout)["bundle_path"], texts)
    np.testing.assert_array_equal(predictions(summary["bundle_path"], texts), expected)
