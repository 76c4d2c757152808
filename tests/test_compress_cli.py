"""`frugalml compress` as a user runs it, and the `compress` pipeline step."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_cli import run_cli

from frugalml.bundle import load_bundle
from frugalml.lineage import open_store
from frugalml.pipeline import run_pipeline
from frugalml.settings import INFERENCE_ENV, get_settings

FAST = ("--threads", "1", "--latency-runs", "5", "--measure-seconds", "0.05")


def _tune(capsys, tiny_base, files) -> str:
    code, out, _ = run_cli(
        capsys, "tune", str(files["train"]), "--base", str(tiny_base), "--method", "full", "--json"
    )
    assert code == 0
    return json.loads(out)["bundle_id"]


def test_compress_selects_within_budget_registers_lineage_and_serves(
    capsys, monkeypatch, tiny_base, intent_files, home
):
    for name in INFERENCE_ENV:
        monkeypatch.delenv(name, raising=False)  # as in a fresh shell
    teacher = _tune(capsys, tiny_base, intent_files)
    train, dev = str(intent_files["train"]), str(intent_files["test"])
    code, out, err = run_cli(
        capsys,
        "compress",
        teacher,
        "--data",
        train,
        "--eval",
        dev,
        "--techniques",
        "onnx,int8",
        "--keep",
        "all",
        *FAST,
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["baseline"]["bundle_id"] == teacher
    assert [c["recipe"] for c in result["candidates"]] == ["onnx", "onnx + int8"]
    for entry in [result["baseline"], *result["candidates"]]:
        for key in (
            "accuracy",
            "macro_f1",
            "size_bytes",
            "p50_ms",
            "batch32_per_s",
            "peak_rss_mb",
            "agreement",
        ):
            assert entry[key] is not None
    # Measured as `serve` runs models: OpenMP threads that busy-wait made PyTorch latency on a
    # busy machine 40x worse than served.
    assert result["inference_env"] == INFERENCE_ENV
    # The selection rule: the smallest candidate within one accuracy point of the baseline.
    floor = result["baseline"]["accuracy"] - 0.01
    within = [c for c in [result["baseline"], *result["candidates"]] if c["accuracy"] >= floor - 1e-12]
    selected = result["selected"]
    assert selected["bundle_id"] == min(within, key=lambda c: c["size_bytes"])["bundle_id"]
    assert {"bundle_id", "bundle_path", "accuracy", "size_bytes"} <= selected.keys()

    # Every candidate is registered, with its parent chain back to the teacher.
    store = open_store()
    int8 = result["candidates"][1]["bundle_id"]
    chain = [row["id"] for row in store.lineage(int8)]
    assert chain == [int8, result["candidates"][0]["bundle_id"], teacher]
    assert store.find_bundle(int8)["metrics"]["accuracy"] == result["candidates"][1]["accuracy"]

    # The report: JSON, Markdown table and PNG plot side by side.
    report = {kind: Path(path) for kind, path in result["report"].items()}
    assert report["json"].parent == report["png"].parent == report["md"].parent
    assert json.loads(report["json"].read_text())["selected"]["bundle_id"] == selected["bundle_id"]
    assert report["png"].read_bytes()[:4] == b"\x89PNG" and "onnx + int8" in report["md"].read_text()

    # The compressed bundle works in eval and predict with no extra flags.
    code, out, _ = run_cli(capsys, "eval", int8, dev, "--json")
    assert code == 0 and json.loads(out)["accuracy"] == result["candidates"][1]["accuracy"]
    code, out, _ = run_cli(capsys, "predict", int8, "my card was stolen block it", "--json")
    assert code == 0 and json.loads(out)[0]["label"] == "lost_card"


def test_compress_refuses_selecting_on_training_data_and_unknown_techniques(
    capsys, tiny_base, intent_files, home
):
    teacher = _tune(capsys, tiny_base, intent_files)
    train = str(intent_files["train"])
    code, _, err = run_cli(capsys, "compress", teacher, "--data", train, "--eval", train)
    assert code == 2 and "held-out" in err
    code, _, err = run_cli(
        capsys,
        "compress",
        teacher,
        "--data",
        train,
        "--eval",
        str(intent_files["test"]),
        "--techniques",
        "zip",
    )
    assert code == 2 and "unknown technique" in err
    test = str(intent_files["test"])
    code, _, err = run_cli(capsys, "compress", teacher, "--data", train, "--eval", test, "--techniques", " ")
    assert code == 2 and "no techniques given" in err  # not every technique
    for option, value in (("--heads", "1.5"), ("--latency-runs", "0"), ("--threads", "-1")):
        code, _, err = run_cli(capsys, "compress", teacher, "--data", train, "--eval", test, option, value)
        name = option.removeprefix("--").replace("-", "_")
        assert code == 2 and f"compress settings out of range: {name}=" in err, err  # before any build


def test_a_compress_run_that_fails_is_recorded_as_failed(capsys, tiny_base, intent_files, home, tmp_path):
    teacher = _tune(capsys, tiny_base, intent_files)
    data = ("--data", str(intent_files["train"]), "--eval", str(intent_files["test"]))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    code, _, err = run_cli(capsys, "compress", teacher, *data, "--out", str(a_file), *FAST)
    assert code == 2 and "is not a folder" in err  # refused before any run starts
    (tmp_path / "report" / "compress.md").mkdir(parents=True)  # the run fails at its last step
    with pytest.raises(IsADirectoryError):
        run_cli(
            capsys,
            "compress",
            teacher,
            *data,
            "--techniques",
            "onnx",
            "--out",
            str(tmp_path / "report"),
            *FAST,
        )
    with sqlite3.connect(get_settings().lineage_path) as db:
        runs = db.execute("SELECT status FROM runs WHERE kind = 'compress'").fetchall()
    assert runs == [("failed",)]  # not left "running"


PIPELINE = """
steps:
  - id: tune
    tune: {{train: train.csv, method: full, base: "{base}"}}
  - id: compress
    compress:
      bundle: "${{tune.bundle_id}}"
      train: train.csv
      eval: test.csv
      techniques: [onnx]
      threads: 1
      latency_runs: 5
      measure_seconds: 0.05
"""


def test_compress_pipeline_step_outputs_the_selected_bundle_and_caches(
    tiny_base, intent_files, home, tmp_path, monkeypatch
):
    import dataclasses

    from frugalml.compress import CompressConfig, steps

    spec = tmp_path / "p.yaml"
    spec.write_text(PIPELINE.format(base=tiny_base))
    first = run_pipeline(spec)
    outputs = first.outputs("compress")
    assert outputs["baseline_id"] == first.outputs("tune")["bundle_id"]
    assert load_bundle(outputs["bundle_path"]).id == outputs["bundle_id"]
    assert {"accuracy", "size_bytes", "report"} <= outputs.keys()
    spec.write_text(PIPELINE.format(base=tiny_base).replace("threads: 1", "threads: 1\n      keep: front"))
    again = run_pipeline(spec)  # a setting spelled out at its default is the same step
    assert [s.cached for s in again.steps] == [True, True]

    # As a new frugalml version that changes a default would: the compress step runs again.
    @dataclasses.dataclass
    class NewDefaults(CompressConfig):
        max_drop: float = 2.0

    monkeypatch.setattr(steps, "CompressConfig", NewDefaults)
    assert [s.cached for s in run_pipeline(spec).steps] == [True, False]


def test_compress_step_takes_techniques_as_a_list_or_comma_separated():
    from frugalml.compress.steps import step_config

    inputs = {"bundle": "b", "train": "t.csv", "eval": "e.csv"}
    for given in (["onnx", "int8"], "onnx, int8", "onnx,int8"):
        assert step_config({**inputs, "techniques": given}).techniques == ("onnx", "int8")
