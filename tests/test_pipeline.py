"""Pipelines: steps chain through references and are reused when their inputs are unchanged."""

from __future__ import annotations

import re

import pytest
from conftest import make_rows, write_csv

from frugalml.errors import FrugalError
from frugalml.pipeline import run_pipeline

PIPELINE = """
name: tiny
steps:
  - id: tune
    tune: {{train: train.csv, eval: test.csv, method: head, base: "{base}"}}
  - id: check
    eval: {{bundle: "${{tune.bundle_id}}", data: test.csv}}
"""


def test_second_run_is_cached_and_a_data_change_reruns(tiny_base, intent_files, home, tmp_path):
    spec = tmp_path / "p.yaml"
    spec.write_text(PIPELINE.format(base=tiny_base))
    first = run_pipeline(spec)
    assert [s.cached for s in first.steps] == [False, False]
    assert first.outputs("check")["bundle_id"] == first.outputs("tune")["bundle_id"]
    assert first.outputs("check")["accuracy"] == first.outputs("tune")["metrics"]["accuracy"]

    second = run_pipeline(spec)
    assert [s.cached for s in second.steps] == [True, True]
    assert second.outputs("tune") == first.outputs("tune")

    write_csv(intent_files["train"], make_rows(20, seed=99))  # same path, new content
    third = run_pipeline(spec)
    assert [s.cached for s in third.steps] == [False, False]
    assert third.outputs("tune")["bundle_id"] != first.outputs("tune")["bundle_id"]


def test_a_deleted_bundle_is_rebuilt_not_reused(tiny_base, intent_files, home, tmp_path):
    import shutil

    spec = tmp_path / "p.yaml"
    spec.write_text(PIPELINE.format(base=tiny_base))
    first = run_pipeline(spec)
    shutil.rmtree(first.outputs("tune")["bundle_path"])
    again = run_pipeline(spec)
    assert again.steps[0].cached is False


def test_an_eval_of_a_removed_bundle_is_not_reused(tiny_base, intent_files, home, tmp_path):
    import shutil

    spec = tmp_path / "p.yaml"
    spec.write_text(PIPELINE.format(base=tiny_base))
    bundle = run_pipeline(spec).outputs("tune")
    evaluation = tmp_path / "eval.yaml"
    evaluation.write_text(
        f"steps:\n  - id: ev\n    eval: {{bundle: {bundle['bundle_id']}, data: test.csv}}\n"
    )
    assert run_pipeline(evaluation).outputs("ev")["accuracy"] >= 0
    shutil.rmtree(bundle["bundle_path"])  # what `models rm` does to the folder
    with pytest.raises(FrugalError):  # evaluated again, and the bundle is gone: not the old score
        run_pipeline(evaluation)


def test_a_deleted_output_file_is_rewritten_not_reused(intent_files, home, tmp_path):
    from pathlib import Path

    spec = tmp_path / "p.yaml"
    spec.write_text("steps:\n  - id: more\n    label_augment: {data: train.csv, per_row: 1}\n")
    first = run_pipeline(spec)
    written = Path(first.outputs("more")["data"])
    assert run_pipeline(spec).steps[0].cached is True
    written.unlink()
    again = run_pipeline(spec)
    assert again.steps[0].cached is False and written.exists()


def test_a_local_base_model_is_found_next_to_the_pipeline_and_its_change_reruns(
    tiny_base, intent_files, home, tmp_path, monkeypatch
):
    import json
    import shutil

    shutil.copytree(tiny_base, tmp_path / "models" / "tiny")
    spec = tmp_path / "p.yaml"
    spec.write_text("steps:\n  - id: tune\n    tune: {train: train.csv, method: head, base: models/tiny}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative to the pipeline file, not to where it runs
    assert run_pipeline(spec).steps[0].cached is False
    assert run_pipeline(spec).steps[0].cached is True
    config = tmp_path / "models" / "tiny" / "config.json"  # the model at that path changes
    config.write_text(json.dumps({**json.loads(config.read_text()), "note": "retrained"}))
    assert run_pipeline(spec).steps[0].cached is False


def test_a_reference_to_no_earlier_step_is_refused_before_any_step_runs(
    tmp_path, tiny_base, intent_files, home
):
    spec = tmp_path / "p.yaml"
    train = intent_files["train"]
    spec.write_text(
        f"steps:\n  - id: tune\n    tune: {{train: {train}, base: {tiny_base}, method: head}}\n"
        f"  - id: check\n    eval: {{bundle: '${{tuned.bundle_id}}', data: {train}}}\n"
    )
    with pytest.raises(
        FrugalError, match=re.escape("no earlier step has the id 'tuned' (earlier steps: 'tune')")
    ):
        run_pipeline(spec)
    assert not (home / "bundles").exists() or not any((home / "bundles").iterdir())  # tune never ran
    # A key typo is refused as early, naming what a tune step does give.
    spec.write_text(spec.read_text().replace("tuned.bundle_id", "tune.bundle"))
    with pytest.raises(
        FrugalError, match=r"\$\{tune.bundle\}, but a tune step has no output 'bundle'; .*bundle_id"
    ):
        run_pipeline(spec)
    assert not (home / "bundles").exists() or not any((home / "bundles").iterdir())


def test_a_misnamed_setting_in_a_late_step_is_refused_before_any_step_runs(
    tmp_path, tiny_base, intent_files, home
):
    spec = tmp_path / "p.yaml"
    train, test = intent_files["train"], intent_files["test"]
    spec.write_text(
        f"steps:\n  - id: tune\n    tune: {{train: {train}, base: {tiny_base}, method: head}}\n"
        f"  - id: small\n    compress: {{bundle: '${{tune.bundle_id}}', train: {train}, eval: {test}, "
        "maxdrop: 1}\n"
    )
    with pytest.raises(
        FrugalError, match=re.escape("step 'small' (compress): unknown setting(s) ['maxdrop']")
    ):
        run_pipeline(spec)
    assert not (home / "bundles").exists() or not any((home / "bundles").iterdir())  # tune never ran


def test_an_out_of_range_setting_in_a_late_step_is_refused_before_any_step_runs(
    tmp_path, tiny_base, intent_files, home
):
    spec = tmp_path / "p.yaml"
    train = intent_files["train"]
    spec.write_text(
        f"steps:\n  - id: tune\n    tune: {{train: {train}, base: {tiny_base}, method: head}}\n"
        f"  - id: again\n    tune: {{train: '${{tune.bundle_path}}', base: {tiny_base}, epochs: -1}}\n"
    )
    with pytest.raises(FrugalError, match=r"step 'again' \(tune\): .*epochs"):
        run_pipeline(spec)
    assert not (home / "bundles").exists() or not any((home / "bundles").iterdir())  # tune never ran


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: []", "non-empty 'steps' list"),
        ("steps:\n  - id: a\n    bake: {}", "exactly one of"),
        (
            "steps:\n  - id: a\n    eval: {bundle: '${nope.bundle_id}', data: x.csv}",
            "refers to ${nope.bundle_id}, but no earlier step has the id 'nope' (earlier steps: none)",
        ),
        ("steps:\n  - tune: {train: train.csv, learning_rate: 3}", "unknown setting(s) ['learning_rate']"),
        ("steps:\n  - eval: {bundle: b1}", "step 'eval' (eval): missing ['data']"),
        ("steps:\n  - eval: {bundle: b1, dat: x.csv}", "missing ['data'], unknown setting(s) ['dat']"),
        ("steps:\n  - id: a\n    tune: {train: t.csv}\n  - id: a\n    tune: {train: t.csv}", "used twice"),
        ("steps:\n  - tune: train.csv", "takes its settings as a mapping"),
        ("steps:\n  - eval: {bundle: x, data: [a.csv, b.csv]}", "'data' is a path, not ['a.csv', 'b.csv']"),
    ],
)
def test_bad_pipelines_are_refused(tmp_path, intent_files, home, text, message):
    spec = tmp_path / "p.yaml"
    spec.write_text(text)
    with pytest.raises(FrugalError, match=re.escape(message)):
        run_pipeline(spec)


COLUMNS_PIPELINE = """
steps:
  - id: tune
    tune: {{train: train.csv, eval: test.csv, method: head, base: "{base}", {columns}}}
  - id: check
    eval: {{bundle: "${{tune.bundle_id}}", data: test.csv, {columns}}}
"""


def test_tune_and_eval_steps_read_the_columns_they_are_told(tiny_base, home, tmp_path):
    for name, seed in (("train", 1), ("test", 2)):
        rows = [(f"r{i}", text, label) for i, (text, label) in enumerate(make_rows(20, seed=seed))]
        write_csv(tmp_path / f"{name}.csv", rows, header=("ref", "body", "intent"))
    spec = tmp_path / "p.yaml"
    columns = "text_column: body, label_column: intent, id_column: ref"
    spec.write_text(COLUMNS_PIPELINE.format(base=tiny_base, columns=columns))
    result = run_pipeline(spec)
    assert result.outputs("check")["accuracy"] == result.outputs("tune")["metrics"]["accuracy"]
    assert result.outputs("check")["accuracy"] > 0.5  # 3 classes: the labels were read as labels
    spec.write_text(COLUMNS_PIPELINE.format(base=tiny_base, columns="label_column: intent"))
    with pytest.raises(FrugalError, match="text column"):
        run_pipeline(spec)


def test_a_setting_spelled_out_at_its_default_is_cached_and_a_new_default_reruns(
    tiny_base, intent_files, home, tmp_path, monkeypatch
):
    import dataclasses

    from frugalml.tune import TuneConfig, steps

    spec = tmp_path / "p.yaml"
    spec.write_text(PIPELINE.format(base=tiny_base))
    first = run_pipeline(spec)
    spec.write_text(PIPELINE.format(base=tiny_base).replace("method: head", "method: head, seed: 0"))
    assert [s.cached for s in run_pipeline(spec).steps] == [True, True]

    # As a new frugalml version that changes a default would: the tune step runs again.
    @dataclasses.dataclass
    class NewDefaults(TuneConfig):
        head_c: float | None = 0.3

    monkeypatch.setattr(steps, "TuneConfig", NewDefaults)
    again = run_pipeline(spec)
    assert again.steps[0].cached is False
    assert again.outputs("tune")["bundle_id"] != first.outputs("tune")["bundle_id"]


def test_an_eval_setting_spelled_out_at_its_default_is_cached_and_a_new_default_reruns_eval_alone(
    tiny_base, intent_files, home, tmp_path, monkeypatch
):
    import dataclasses

    from frugalml.evaluate import EvalConfig, steps

    spec = tmp_path / "p.yaml"
    spec.write_text(PIPELINE.format(base=tiny_base))
    first = run_pipeline(spec)
    spec.write_text(
        PIPELINE.format(base=tiny_base).replace("data: test.csv", "data: test.csv, batch_size: 64")
    )
    assert [s.cached for s in run_pipeline(spec).steps] == [True, True]

    @dataclasses.dataclass
    class NewDefaults(EvalConfig):
        batch_size: int = 5

    monkeypatch.setattr(steps, "EvalConfig", NewDefaults)
    spec.write_text(PIPELINE.format(base=tiny_base))
    again = run_pipeline(spec)
    assert [s.cached for s in again.steps] == [True, False]
    assert again.outputs("check")["accuracy"] == first.outputs("check")["accuracy"]


def test_a_step_config_is_built_once_per_run(tiny_base, intent_files, home, tmp_path, monkeypatch):
    from frugalml.step_kind import config_from
    from frugalml.tune import steps

    built = []

    def counted(args, config_type):
        built.append(config_type.__name__)
        return config_from(args, config_type)

    monkeypatch.setattr(steps, "config_from", counted)
    spec = tmp_path / "p.yaml"
    spec.write_text(PIPELINE.format(base=tiny_base))
    run_pipeline(spec)
    assert built == ["TuneConfig"]  # checked when the file is read, and that config is the one that ran


def test_a_required_setting_from_an_earlier_step_is_left_to_run_time(tmp_path, intent_files):
    from frugalml.pipeline import load_pipeline

    spec = tmp_path / "p.yaml"
    spec.write_text(
        f"steps:\n  - id: aug\n    label_augment: {{data: {intent_files['train']}}}\n"
        "  - id: ask\n    label_suggest: {pool: '${aug.data}', budget: '${aug.rows}'}\n"
    )
    _, configs = load_pipeline(spec)  # budget has no default: the partial config cannot be built
    assert "ask" not in configs and "aug" in configs
