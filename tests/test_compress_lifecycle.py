"""What a compress run leaves behind: no unregistered bundle or measuring process after the run
is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import run_cli

from frugalml.lineage import open_store

MEASURE_MODULE = "frugalml.compress.measure"


def measuring_children(home: Path) -> list[int]:
    """Ids of the processes measuring a bundle under `home`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        words = [part.decode(errors="replace") for part in command]
        if MEASURE_MODULE in words and any(word.startswith(str(home)) for word in words):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_mid_measurement_leaves_every_bundle_registered_and_no_measuring_child(
    capsys, tiny_base, intent_files, home
):
    code, out, _ = run_cli(
        capsys, "tune", str(intent_files["train"]), "--base", str(tiny_base), "--method", "full", "--json"
    )
    assert code == 0
    teacher_id = json.loads(out)["bundle_id"]
    frugalml = str(Path(sys.executable).with_name("frugalml"))  # the installed command
    data = ("--data", str(intent_files["train"]), "--eval", str(intent_files["test"]))
    slow = ("--threads", "1", "--latency-runs", "5", "--measure-seconds", "120")  # measures for minutes
    process = subprocess.Popen(
        [frugalml, "compress", teacher_id, *data, "--techniques", "onnx", "--keep", "all", *slow],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while not children and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            children = measuring_children(home)
        assert children, "measuring never started"
        time.sleep(10)  # past loading, into the timed runs, where the child writes nothing
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

        deadline = time.monotonic() + 10
        while measuring_children(home) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert measuring_children(home) == []

        registered = {row["id"] for row in open_store().list_bundles()}
        folders = {p.name for p in (home / "bundles").iterdir() if not p.name.startswith(".")}
        assert len(folders) == 2 and folders <= registered  # the teacher and the ONNX candidate
    finally:
        process.kill()
        for pid in children:  # the children this test started, should they have outlived it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
