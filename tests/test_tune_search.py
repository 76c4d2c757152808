"""`tune --search N` with Optuna on the tiny BERT: trials are runs, the best is kept."""

from __future__ import annotations

import json
import sqlite3

import pytest
from test_cli import run_cli

from frugalml.lineage import open_store
from frugalml.settings import get_settings
from frugalml.tune import TuneConfig
from frugalml.tune.search import default_space


def _tune_runs() -> list[tuple[str, str]]:
    store = open_store(get_settings())
    with sqlite3.connect(store.path) as db:
        return db.execute("SELECT id, status FROM runs WHERE kind='tune' ORDER BY started_at").fetchall()


def test_search_runs_three_trials_keeps_the_best_and_scores_it_on_eval(capsys, tiny_base, intent_files, home):
    args = ["tune", str(intent_files["train"]), "--base", str(tiny_base), "--method", "lora"]
    args += ["--batch-size", "8", "--eval", str(intent_files["test"]), "--search", "3", "--json"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    result = json.loads(out)
    trials = result["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert {"lr", "epochs", "lora_r"} <= set(trials[0]["params"])
    complete = [t for t in trials if t["state"] == "complete"]
    best = min(complete, key=lambda t: t["val_loss"])
    assert result["best_trial"] == best["number"] and best["bundle_id"] == result["bundle_id"]
    assert result["metrics"]["accuracy"] >= 0.9 and result["metrics"]["eval_n"] == 24  # after the search
    assert len(_tune_runs()) == 3  # every trial a run in the lineage store
    bundles = open_store(get_settings()).list_bundles()
    assert [b["id"] for b in bundles] == [result["bundle_id"]]  # the others' bundles removed
    assert result["method"] == "lora"  # the rest as tune --json says it


def test_search_space_file_and_its_errors(capsys, tiny_base, intent_files, home, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("lr: {low: 0.001, high: 0.01, log: true}\nepochs: [1]\nprefix_length: [2, 3]\n")
    args = ["tune", str(intent_files["train"]), "--base", str(tiny_base), "--method", "prefix"]
    code, out, _ = run_cli(capsys, *args, "--search", "2", "--search-space", str(space))
    assert code == 0 and "search (validation split)" in out and "prefix" in out and "best: trial" in out
    space.write_text("rank: [4, 8]\n")
    code, out, err = run_cli(capsys, *args, "--search", "2", "--search-space", str(space))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "unknown setting 'rank'" in err
    space.write_text("lr: {low: 0.01, high: 0.001}\n")
    code, _, err = run_cli(capsys, *args, "--search", "2", "--search-space", str(space))
    assert code == 2 and "lr needs low < high" in err


@pytest.mark.parametrize(
    ("method", "size"), [("lora", "lora_r"), ("prefix", "prefix_length"), ("adapter", "adapter_reduction")]
)
def test_the_default_space_sizes_each_method(method, size):
    space = default_space(TuneConfig(method=method))
    assert {"lr", "epochs", size} == set(space)
    assert list(default_space(TuneConfig(method="head"))) == ["head_c"]
