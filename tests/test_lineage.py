"""The SQLite store: bundles, prefixes, lineage, removal rules, step cache."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing

import pytest
from conftest import write_csv

from frugalml.bundle import Bundle, write_bundle
from frugalml.data import load_dataset
from frugalml.errors import BundleError
from frugalml.lineage import LineageStore, open_store, resolve_bundle


def _write(store, bundle_id, parents=()):
    bundle = Bundle(
        id=bundle_id,
        name=bundle_id,
        labels=["a"],
        base_model="m",
        method="head",
        parents=list(parents),
        metrics={"accuracy": 0.5},
    )
    return write_bundle(store, bundle, lambda f: (f / "w.bin").write_bytes(b"1234"))


def test_lineage_runs_and_datasets(tmp_path):
    store = LineageStore(tmp_path / "r.sqlite")
    data = load_dataset(write_csv(tmp_path / "d.csv", [("a", "x"), ("b", "y")]))
    store.add_dataset(data)
    run = store.start_run("tune", {"lr": 0.1}, data.sha256)
    store.finish_run(run, "done", {"accuracy": 0.5})
    store.add_bundle(_write(tmp_path, "bparent1"), run_id=run, data_sha256=data.sha256)
    store.add_bundle(_write(tmp_path, "bchild01", parents=["bparent1"]), data_sha256=data.sha256)

    chain = store.lineage("bchild")
    assert [row["id"] for row in chain] == ["bchild01", "bparent1"]
    assert chain[1]["run"]["config"] == {"lr": 0.1} and chain[1]["run"]["status"] == "done"
    assert chain[1]["dataset"]["rows"] == 2 and chain[1]["dataset"]["labels"] == 2
    assert resolve_bundle("bchild", store).id == "bchild01"


def test_prefix_rules_and_removal(tmp_path):
    store = LineageStore(tmp_path / "r.sqlite")
    parent = _write(tmp_path, "bab1")
    store.add_bundle(parent)
    store.add_bundle(_write(tmp_path, "bab2", parents=["bab1"]))
    with pytest.raises(BundleError, match="ambiguous"):
        store.find_bundle("bab")
    with pytest.raises(BundleError, match="no bundle 'zz'"):
        store.find_bundle("zz")
    with pytest.raises(BundleError, match="is the parent of"):
        store.remove_bundle("bab1")
    # SQL wildcards are plain characters in a reference: they match no bundle, and remove none.
    for wildcard in ("%", "ba_2", "b%2"):
        with pytest.raises(BundleError, match="no bundle"):
            store.remove_bundle(wildcard)
    with pytest.raises(BundleError, match="empty bundle reference"):
        store.find_bundle("")
    assert len(store.list_bundles()) == 2
    store.remove_bundle("bab2")
    assert not (tmp_path / "bab2").exists()
    store.remove_bundle("bab1")
    assert store.list_bundles() == [] and not parent.path.exists()


def test_step_cache_survives_reopening(tmp_path):
    LineageStore(tmp_path / "r.sqlite").cache_step("k1", "tune", {"bundle_id": "b1"})
    assert LineageStore(tmp_path / "r.sqlite").cached_step("k1") == {"bundle_id": "b1"}
    assert LineageStore(tmp_path / "r.sqlite").cached_step("k2") is None


def test_run_block_records_done_with_summary_or_failed(tmp_path):
    lineage = LineageStore(tmp_path / "r.sqlite")
    with lineage.run("tune", {"lr": 0.1}) as run:
        run.summary = {"accuracy": 0.9}
    with pytest.raises(KeyboardInterrupt), lineage.run("label", {}) as interrupted:
        raise KeyboardInterrupt  # Ctrl-C inside a stage still ends its run
    done, failed = lineage.get_run(run.id), lineage.get_run(interrupted.id)
    assert (done["status"], done["metrics"]) == ("done", {"accuracy": 0.9})
    assert done["pid"] == os.getpid() and done["finished_at"]
    assert (failed["status"], failed["metrics"]) == ("failed", {})


def test_a_home_with_the_older_file_name_keeps_its_history(tmp_path, monkeypatch):
    monkeypatch.setenv("FRUGALML_HOME", str(tmp_path))
    old = LineageStore(tmp_path / "registry.sqlite")
    old.cache_step("k1", "tune", {"bundle_id": "b1"})
    assert open_store().cached_step("k1") == {"bundle_id": "b1"}
    assert (tmp_path / "lineage.sqlite").exists() and not (tmp_path / "registry.sqlite").exists()


def test_a_store_made_before_runs_had_a_pid_gains_the_column(tmp_path):
    path = tmp_path / "r.sqlite"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT, status TEXT, config TEXT, "
            "data_sha256 TEXT, metrics TEXT, started_at TEXT, finished_at TEXT)"
        )
        db.execute("INSERT INTO runs VALUES ('r1', 'tune', 'done', '{}', '', '{}', 'x', 'y')")
    lineage = LineageStore(path)
    assert lineage.get_run("r1")["pid"] is None
    assert lineage.get_run(lineage.start_run("tune", {}))["pid"] == os.getpid()
