"""Bundles: atomic writes, hash verification, and nothing half-written after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from frugalml.bundle import TEMP_PREFIX, Bundle, load_bundle, new_bundle_id, write_bundle
from frugalml.errors import BundleError


def _bundle() -> Bundle:
    return Bundle(id=new_bundle_id(), name="t", labels=["a", "b"], base_model="tiny", method="head")


def _populate(folder: Path) -> None:
    (folder / "model.bin").write_bytes(os.urandom(4096))
    (folder / "sub").mkdir()
    (folder / "sub" / "tok.json").write_text('{"x": 1}')


def test_round_trip_records_every_file_with_hash(tmp_path):
    written = write_bundle(tmp_path, _bundle(), _populate)
    loaded = load_bundle(written.path)
    assert loaded.manifest() == written.manifest()
    assert set(loaded.files) == {"model.bin", "sub/tok.json"}
    assert loaded.size_bytes == 4096 + 8
    assert json.loads((written.path / "bundle.json").read_text())["id"] == written.id


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_bundle_is_refused(tmp_path, damage):
    bundle = write_bundle(tmp_path, _bundle(), _populate)
    target = bundle.path / "model.bin"
    data = target.read_bytes()
    if damage == "flip":
        target.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    elif damage == "truncate":
        target.write_bytes(data[:100])
    else:
        target.unlink()
    with pytest.raises(BundleError, match=r"corrupt|incomplete"):
        load_bundle(bundle.path)


def test_not_a_bundle_and_malformed_manifest(tmp_path):
    with pytest.raises(BundleError, match="not a frugalml bundle"):
        load_bundle(tmp_path)
    (tmp_path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="malformed"):
        load_bundle(tmp_path)


def test_failure_during_populate_leaves_nothing(tmp_path):
    def explode(folder: Path) -> None:
        (folder / "half.bin").write_bytes(b"x" * 10)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_bundle(tmp_path, _bundle(), explode)
    assert list(tmp_path.iterdir()) == []


WRITER = """
import sys, time
from pathlib import Path
from frugalml.bundle import Bundle, write_bundle
def populate(folder):
    (folder / "model.bin").write_bytes(b"x" * 1000)
    print("writing", flush=True)
    time.sleep(60)
bundle = Bundle(id="bkilled", name="k", labels=["a"], base_model="m", method="head")
write_bundle(Path(sys.argv[1]), bundle, populate)
"""


def test_writer_killed_mid_write_leaves_no_bundle_and_is_cleaned_up(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "writing"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "bkilled").exists()
    partials = list(tmp_path.glob(f"{TEMP_PREFIX}*"))
    assert len(partials) == 1  # the dead writer's temporary folder, never under a bundle name
    time.sleep(0.1)
    write_bundle(tmp_path, _bundle(), _populate)  # the next writer removes it
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_files_the_manifest_does_not_list_are_refused(tmp_path):
    bundle = write_bundle(tmp_path, _bundle(), _populate)
    (bundle.path / "sub" / "added.json").write_text("{}")
    (bundle.path / "linked").symlink_to(bundle.path / "sub")  # a link counts, whatever it points at
    with pytest.raises(BundleError, match=r"does not list: linked, sub/added.json"):
        load_bundle(bundle.path)
