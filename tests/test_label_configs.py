"""Label settings: one config per step kind holds every default, and refuses a bad value first."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import make_rows, write_csv
from test_label_workflows import invoke

from frugalml.data import load_dataset
from frugalml.errors import FrugalError
from frugalml.label import labelstudio, steps
from frugalml.pipeline import run_pipeline


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    train = write_csv(tmp_path / "train.csv", make_rows(10, seed=1))
    export = tmp_path / "export.json"
    labelstudio.write_tasks(labelstudio.to_tasks(load_dataset(train)), export)  # labels as annotations
    return {
        "train": train,
        "pool": write_csv(tmp_path / "pool.csv", [(t,) for t, _ in make_rows(10, seed=3)], ("text",)),
        "export": export,
    }


def run_step(tmp_path: Path, step: str):
    spec = tmp_path / "p.yaml"
    spec.write_text(f"steps:\n  - id: s\n    {step}\n")
    return run_pipeline(spec).steps[0]


# kind: (its config's name in label.steps, the step's settings, a default spelled out, a new default)
STEP_DEFAULTS = {
    "label_auto": (
        "AutoLabelConfig",
        "labelled: train.csv, unlabelled: pool.csv, base: BASE",
        "rounds: 2",
        {"neighbours": 0},
    ),
    "label_suggest": (
        "SuggestConfig",
        "pool: pool.csv, budget: 2, strategy: kcenter, base: BASE",
        "dup_threshold: 0.95",
        {"seed": 1},
    ),
    "label_import": (
        "ImportConfig",
        "data: export.json",
        "labels: null",
        {"labels": "refund,lost_card,password"},
    ),
    "label_issues": (
        "IssuesConfig",
        "data: train.csv, folds: 2, base: BASE",
        "seed: 0",
        {"dup_threshold": 0.9},
    ),
    "label_augment": ("AugmentConfig", "data: train.csv, per_row: 1", "seed: 0", {"operations": ("swap",)}),
}


@pytest.mark.parametrize("kind", STEP_DEFAULTS)
def test_a_default_spelled_out_is_cached_and_a_new_default_reruns_each_label_step(
    kind, tiny_base, files, home, tmp_path, monkeypatch
):
    config_name, settings, spelled_out, new_defaults = STEP_DEFAULTS[kind]
    settings = settings.replace("BASE", str(tiny_base))
    assert run_step(tmp_path, f"{kind}: {{{settings}}}").cached is False
    assert run_step(tmp_path, f"{kind}: {{{settings}, {spelled_out}}}").cached is True

    # As a new frugalml version that changes a default would: the step runs again.
    new_defaults_type = dataclasses.make_dataclass(
        "NewDefaults",
        [(name, object, dataclasses.field(default=value)) for name, value in new_defaults.items()],
        bases=(getattr(steps, config_name),),
    )
    monkeypatch.setattr(steps, config_name, new_defaults_type)
    assert run_step(tmp_path, f"{kind}: {{{settings}}}").cached is False


# Each names a file that does not exist: the setting is refused before any file is read.
BAD_COMMANDS = {
    "auto folds": (["auto", "missing.csv", "missing-pool.csv", "--folds", "1"], "folds must be 2 or more"),
    "auto precision": (
        ["auto", "missing.csv", "missing-pool.csv", "--target-precision", "1"],
        "target precision must be in [0.5, 1)",
    ),
    "suggest budget": (["suggest", "missing.csv", "--budget", "0"], "budget must be at least 1, got 0"),
    "suggest dup_threshold": (
        ["suggest", "missing.csv", "--budget", "2", "--dup-threshold", "2"],
        "dup_threshold must be in (0, 1], got 2.0",
    ),
    "suggest strategy": (
        ["suggest", "missing.csv", "--budget", "2", "--strategy", "best"],
        "unknown strategy",
    ),
    "issues folds": (["issues", "missing.csv", "--folds", "1"], "folds must be 2 or more, got 1"),
    "issues dup_threshold": (["issues", "missing.csv", "--dup-threshold", "0"], "dup_threshold must be in"),
    "augment per_row": (["augment", "missing.csv", "--per-row", "-1"], "per_row must be between 1 and 10"),
    "augment operations": (["augment", "missing.csv", "--operations", "swap,spin"], "unknown operation(s)"),
    "import labels": (["import", "missing.json", "--labels", "refund,"], "needs at least 2 labels"),
}


@pytest.mark.parametrize("command", BAD_COMMANDS.values(), ids=BAD_COMMANDS.keys())
def test_the_cli_refuses_a_setting_out_of_range_before_reading_any_file(command, home):
    args, message = command
    code, output = invoke("label", *args)
    assert code == 2 and message in output, output
    assert "missing" not in output and len(output.strip().splitlines()) == 1


BAD_STEPS = {
    "label_auto": (
        "labelled: missing.csv, unlabelled: missing-pool.csv, neighbours: -1",
        "neighbours must be",
    ),
    "label_suggest": ("pool: missing.csv, budget: 0", "budget must be at least 1"),
    "label_import": ("data: missing.json, labels: 'refund,'", "needs at least 2 labels"),
    "label_issues": ("data: missing.csv, dup_threshold: 2", "dup_threshold must be in (0, 1]"),
    "label_augment": ("data: missing.csv, per_row: -1", "per_row must be between 1 and 10"),
}


@pytest.mark.parametrize("kind", BAD_STEPS)
def test_a_step_refuses_a_setting_out_of_range_before_reading_any_file(kind, home, tmp_path):
    settings, message = BAD_STEPS[kind]
    with pytest.raises(FrugalError) as refused:
        run_step(tmp_path, f"{kind}: {{{settings}}}")
    assert message in str(refused.value) and "missing" not in str(refused.value)
