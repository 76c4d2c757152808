"""What a compress run leaves behind: only the kept bundles after `--keep front`, and no
unregistered bundle or measuring process after the run is killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_rows, write_csv
from test_cli import run_cli

from frugalml.bundle import load_bundle
from frugalml.compress import CompressConfig, compress_and_register, workflow
from frugalml.lineage import open_store
from frugalml.settings import INFERENCE_ENV, Settings
from frugalml.tune import TuneConfig
from frugalml.tune.workflow import tune_and_register

MEASURE_MODULE = "frugalml.compress.measure"


@pytest.fixture
def teacher(tiny_base, tmp_path) -> tuple[Settings, str, Path, Path]:
    settings = Settings(home=tmp_path / "home")
    train = write_csv(tmp_path / "train.csv", make_rows(20, seed=1))
    dev = write_csv(tmp_path / "dev.csv", make_rows(8, seed=2))
    config = TuneConfig(method="full", base=str(tiny_base), epochs=1, batch_size=8)
    summary = tune_and_register(train, config, settings=settings)
    return settings, summary.bundle_id, train, dev


# Figures by recipe (the techniques a bundle went through): accuracy, bytes, p50 latency.
DOMINATED = {(): (0.9, 1, 1.0), ("trim",): (0.8, 2, 2.0), ("prune", "trim"): (0.8, 2, 2.0)}
PRUNED_ON_FRONT = {(): (0.9, 3, 1.0), ("trim",): (0.8, 4, 2.0), ("prune", "trim"): (0.8, 1, 2.0)}


def fake_measure(figures_by_recipe):
    """Figures set by the test, so which bundles are on the front is known beforehand."""

    def measure(bundle_path, data, threads, **options):
        bundle = load_bundle(bundle_path)
        accuracy, size, p50 = figures_by_recipe[tuple(bundle.config.get("techniques", ()))]
        return {
            **dict.fromkeys(("macro_f1", "p90_ms", "peak_rss_mb", "load_seconds"), 1.0),
            "accuracy": accuracy,
            "size_bytes": size,
            "p50_ms": p50,
            "batch32_per_s": 100.0,
            "threads": threads,
            "inference_env": INFERENCE_ENV,
            "predictions": [0] * len(data),
        }

    return measure


@pytest.mark.parametrize(
    ("figures", "staying"),
    [(DOMINATED, [()]), (PRUNED_ON_FRONT, [(), ("prune",), ("prune", "trim")])],
    ids=["all-dominated", "pruned-on-front"],
)
def test_keep_front_leaves_only_the_front_the_selected_and_their_lineage(
    teacher, monkeypatch, figures, staying
):
    """`prune` is built only as the source of `prune + trim`: it goes when that goes."""
    settings, teacher_id, train, dev = teacher
    monkeypatch.setattr(workflow, "measure_in_subprocess", fake_measure(figures))
    config = CompressConfig(techniques=("prune", "trim"), layers=(1,), ffn=(1.0,), keep="front")
    result = compress_and_register(teacher_id, train, dev, config, settings=settings)

    rows = open_store(settings).list_bundles()
    recipe_of = {row["id"]: tuple(load_bundle(row["path"]).config.get("techniques", ())) for row in rows}
    assert sorted(recipe_of.values()) == sorted(staying)
    folders = {p.name for p in settings.bundles_dir.iterdir() if not p.name.startswith(".")}
    assert folders == {row["id"] for row in rows}  # nothing on disk the store does not know
    removed = {c["recipe"]: c["removed"] for c in result.to_json()["candidates"]}
    assert removed == {"trim": True, "prune(layers=1) + trim": ("prune", "trim") not in staying}
    for row in rows:  # measured figures reach the rows of the candidates
        if row["id"] != teacher_id and recipe_of[row["id"]] in figures:
            assert row["metrics"]["accuracy"] == figures[recipe_of[row["id"]]][0]
    assert list(result.to_json()) == [
        *("run_id", "max_drop", "threads", "inference_env", "selected", "baseline", "candidates"),
        *("pareto", "failed", "drift", "report"),
    ]


def test_per_technique_options_reach_distillation(teacher, monkeypatch):
    """Attention distillation is off by default; CompressConfig.options turns it on for a run."""
    settings, teacher_id, train, dev = teacher
    figures = {(): (0.9, 2, 1.0), ("prune", "distill"): (0.9, 1, 1.0)}
    monkeypatch.setattr(workflow, "measure_in_subprocess", fake_measure(figures))
    config = CompressConfig(
        techniques=("prune", "distill"),
        layers=(1,),
        ffn=(1.0,),
        distill_epochs=1,
        keep="all",
        options={"distill": {"attention": 1.0}},
    )
    compress_and_register(teacher_id, train, dev, config, settings=settings)
    distilled = [
        b for b in map(load_bundle, settings.bundles_dir.iterdir()) if b.config.get("technique") == "distill"
    ]
    assert len(distilled) == 1
    assert distilled[0].config["options"]["attention"] == 1.0
    assert distilled[0].metrics["attention_distillation"]


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
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
