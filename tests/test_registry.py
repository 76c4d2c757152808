"""The SQLite registry: bundles, prefixes, lineage, removal rules, step cache."""

from __future__ import annotations

import pytest
from conftest import write_csv

from frugalml.bundle import Bundle, write_bundle
from frugalml.data import load_dataset
from frugalml.errors import BundleError
from frugalml.registry import Registry, resolve_bundle


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
    registry = Registry(tmp_path / "r.sqlite")
    data = load_dataset(write_csv(tmp_path / "d.csv", [("a", "x"), ("b", "y")]))
    registry.add_dataset(data)
    run = registry.start_run("tune", {"lr": 0.1}, data.sha256)
    registry.finish_run(run, "done", {"accuracy": 0.5})
    registry.add_bundle(_write(tmp_path, "bparent1"), run_id=run, data_sha256=data.sha256)
    registry.add_bundle(_write(tmp_path, "bchild01", parents=["bparent1"]), data_sha256=data.sha256)

    chain = registry.lineage("bchild")
    assert [row["id"] for row in chain] == ["bchild01", "bparent1"]
    assert chain[1]["run"]["config"] == {"lr": 0.1} and chain[1]["run"]["status"] == "done"
    assert chain[1]["dataset"]["rows"] == 2 and chain[1]["dataset"]["labels"] == 2
    assert resolve_bundle("bchild", registry).id == "bchild01"


def test_prefix_rules_and_removal(tmp_path):
    registry = Registry(tmp_path / "r.sqlite")
    parent = _write(tmp_path, "bab1")
    registry.add_bundle(parent)
    registry.add_bundle(_write(tmp_path, "bab2", parents=["bab1"]))
    with pytest.raises(BundleError, match="ambiguous"):
        registry.find_bundle("bab")
    with pytest.raises(BundleError, match="no bundle 'zz'"):
        registry.find_bundle("zz")
    with pytest.raises(BundleError, match="is the parent of"):
        registry.remove_bundle("bab1")
    # SQL wildcards are plain characters in a reference: they match no bundle, and remove none.
    for wildcard in ("%", "ba_2", "b%2"):
        with pytest.raises(BundleError, match="no bundle"):
            registry.remove_bundle(wildcard)
    with pytest.raises(BundleError, match="empty bundle reference"):
        registry.find_bundle("")
    assert len(registry.list_bundles()) == 2
    registry.remove_bundle("bab2")
    assert not (tmp_path / "bab2").exists()
    registry.remove_bundle("bab1")
    assert registry.list_bundles() == [] and not parent.path.exists()


def test_step_cache_survives_reopening(tmp_path):
    Registry(tmp_path / "r.sqlite").cache_step("k1", "tune", {"bundle_id": "b1"})
    assert Registry(tmp_path / "r.sqlite").cached_step("k1") == {"bundle_id": "b1"}
    assert Registry(tmp_path / "r.sqlite").cached_step("k2") is None
