"""After kill -9: dead runs, orphaned bundles and half-written folders are found and repaired."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from test_cli import run_cli

from frugalml.lineage import open_store
from frugalml.settings import get_settings

# A stage as frugalml writes one: its run is recorded, one bundle is complete but not registered
# yet, a second is half-written; then the process is killed where it stands.
DYING_STAGE = """
import sys, time
from frugalml.bundle import Bundle, write_bundle
from frugalml.lineage import open_store
from frugalml.settings import get_settings

settings = get_settings()
lineage = open_store(settings)
with lineage.run("compress", {"max_drop": 1.0}) as run:
    def files(folder):
        (folder / "model.bin").write_bytes(b"weights")
    done = write_bundle(settings.bundles_dir, Bundle("bdone0000001", "a", ["x", "y"], "m", "head"), files)
    def half(folder):
        (folder / "model.bin").write_bytes(b"half")
        print(run.id, done.id, flush=True)
        time.sleep(600)
    write_bundle(settings.bundles_dir, Bundle("bhalf0000001", "b", ["x", "y"], "m", "head"), half)
"""


def _killed_stage() -> tuple[str, str]:
    child = subprocess.Popen([sys.executable, "-c", DYING_STAGE], stdout=subprocess.PIPE, text=True)
    try:
        run_id, bundle_id = child.stdout.readline().split()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    return run_id, bundle_id


def _doctor(capsys, *options: str) -> dict:
    code, out, _ = run_cli(capsys, "doctor", *options, "--json")
    assert code == 0
    return json.loads(out)


def test_doctor_repairs_what_a_killed_stage_left(home, capsys):
    run_id, bundle_id = _killed_stage()
    bundles = get_settings().bundles_dir
    assert (bundles / bundle_id).is_dir() and any(p.name.startswith(".partial-") for p in bundles.iterdir())

    found = _doctor(capsys)
    assert found["dead_runs"] == [run_id] and found["adopted"] == [bundle_id]
    assert len(found["partials"]) == 1 and not found["clean"]
    assert open_store(reconcile=False).get_run(run_id)["status"] == "running"  # a report changes nothing

    fixed = _doctor(capsys, "--fix")
    assert fixed["dead_runs"] == [run_id] and fixed["adopted"] == [bundle_id]
    lineage = open_store(reconcile=False)
    assert lineage.get_run(run_id)["status"] == "failed"
    assert lineage.find_bundle(bundle_id)["path"] == str(bundles / bundle_id)
    assert not any(p.name.startswith(".partial-") for p in bundles.iterdir())
    assert _doctor(capsys)["clean"]


def test_orphans_can_be_removed_instead(home, capsys):
    _, bundle_id = _killed_stage()
    assert _doctor(capsys, "--fix", "--orphans", "remove")["removed"] == [bundle_id]
    assert not (get_settings().bundles_dir / bundle_id).exists()
    assert open_store().list_bundles() == []


def test_any_command_marks_a_killed_run_failed(home, capsys):
    run_id, _ = _killed_stage()
    code, _, _ = run_cli(capsys, "models", "list", "--json")
    assert code == 0
    assert open_store(reconcile=False).get_run(run_id)["status"] == "failed"


def test_a_live_run_is_left_running(home):
    lineage = open_store()
    with lineage.run("tune", {}) as run:
        assert open_store().get_run(run.id)["status"] == "running"  # this process is alive
    assert os.getpid() == lineage.get_run(run.id)["pid"]


def test_doctor_refuses_an_unknown_orphans_choice(home, capsys):
    code, _, err = run_cli(capsys, "doctor", "--orphans", "keep")
    assert code == 2 and "adopt" in err and len(err.strip().splitlines()) == 1
