"""`--device` on eval, predict, compress and serve: checked before anything loads, placed where
asked. The GPU cases skip with a reason on a machine without one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import make_rows, write_csv
from test_cli import run_cli
from test_serve_support import free_port, tune_tiny_bundle, wait_ready

from frugalml.bundle import Bundle, load_bundle
from frugalml.compress.context import CompressContext
from frugalml.compress.techniques import apply_technique
from frugalml.data import load_dataset
from frugalml.devices import CPU_PROVIDER, CUDA_PROVIDER, onnx_providers
from frugalml.errors import FrugalError
from frugalml.lineage import open_store
from frugalml.pipeline import run_pipeline
from frugalml.runtime import FORMATS, load_predictor
from frugalml.runtime.formats import DEVICE_CHECKS
from frugalml.serve.config import ServeConfig
from frugalml.serve.runner import ServeSpec

HAS_CUDA = torch.cuda.is_available()
ORT_CUDA = CUDA_PROVIDER in ort.get_available_providers()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU; this machine has none")
TEXTS = ["i lost my card", "please reset my password", "i want my money back", "help"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("device-data")
    return {
        "train": write_csv(folder / "train.csv", make_rows(20, seed=1)),
        "test": write_csv(folder / "test.csv", make_rows(8, seed=2)),
    }


@pytest.fixture(scope="module")
def bundle_path(tiny_base, files, tmp_path_factory) -> str:
    return tune_tiny_bundle(tiny_base, files, tmp_path_factory.mktemp("device-home"))


@pytest.fixture(scope="module")
def onnx_bundle(bundle_path, files, tmp_path_factory) -> Bundle:
    source = load_bundle(bundle_path)
    context = CompressContext(
        store=tmp_path_factory.mktemp("device-onnx"), train=load_dataset(files["train"]), teacher=source
    )
    return apply_technique("onnx", source, context)


def _stage_args(command: str, bundle: str, files: dict[str, Path]) -> list[str]:
    """The least arguments each command needs besides --device."""
    data = {
        "eval": [str(files["test"])],
        "predict": ["i lost my card"],
        "compress": ["--data", str(files["train"]), "--eval", str(files["test"])],
        "serve": ["--port", str(free_port())],
    }
    return [command, bundle, *data[command]]


@pytest.mark.parametrize("command", ["eval", "predict", "compress", "serve"])
def test_a_bad_device_is_one_clear_line_and_exit_2_before_the_bundle_is_looked_for(
    capsys, home, files, command
):
    code, out, err = run_cli(capsys, *_stage_args(command, "no-such-bundle", files), "--device", "gpu")
    assert code == 2 and out == ""
    assert "unknown device 'gpu': use auto" in err and "cuda:N" in err and "Traceback" not in err


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", ["eval", "predict", "compress", "serve"])
def test_cuda_asked_for_on_a_machine_without_one_is_a_clear_error(capsys, home, files, bundle_path, command):
    code, _, err = run_cli(capsys, *_stage_args(command, bundle_path, files), "--device", "cuda")
    assert code == 2 and "device 'cuda' asked for, but this machine has no usable CUDA GPU" in err
    assert "Traceback" not in err


def test_eval_and_predict_take_device_cpu(capsys, home, files, bundle_path):
    code, out, err = run_cli(capsys, "eval", bundle_path, str(files["test"]), "--device", "cpu", "--json")
    assert code == 0, err
    on_cpu = json.loads(out)
    code, out, _ = run_cli(capsys, "eval", bundle_path, str(files["test"]), "--json")  # auto
    assert code == 0 and json.loads(out)["accuracy"] == on_cpu["accuracy"] > 0.5
    code, out, err = run_cli(capsys, "predict", bundle_path, *TEXTS, "--device", "cpu", "--json")
    assert code == 0, err
    expected = load_predictor(load_bundle(bundle_path)).predict_proba(TEXTS)
    assert [p["score"] for p in json.loads(out)] == pytest.approx(expected.max(1).tolist())


@pytest.mark.slow  # a minute or more: three measuring subprocesses and a distillation
def test_compress_takes_device_cpu(capsys, home, files, bundle_path):
    fast = ("--threads", "1", "--latency-runs", "3", "--measure-seconds", "0.05")
    code, out, err = run_cli(
        capsys,
        *_stage_args("compress", bundle_path, files),
        "--techniques",
        "prune,distill",
        "--distill-epochs",
        "1",
        *fast,
        "--device",
        "cpu",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["failed"] == [] and result["candidates"][-1]["recipe"].endswith("distill")
    run = open_store().get_run(result["run_id"])
    assert run is not None and run["config"]["device"] == "cpu"


@pytest.mark.slow  # a real server process: tens of seconds on a busy machine
def test_serve_takes_device_cpu_and_its_workers_keep_it(home, bundle_path, tmp_path):
    spec = ServeSpec([("intent", bundle_path)], ServeConfig(), threads=1, device="cuda:1")
    assert ServeSpec.from_json(spec.to_json()) == spec  # workers rebuild the spec from this JSON
    port = free_port()
    cli = "import sys; from frugalml.cli import app; app(sys.argv[1:])"
    process = subprocess.Popen(
        [sys.executable, "-c", cli, "serve", bundle_path, "--port", str(port), "--device", "cpu"],
        env={**os.environ, "FRUGALML_HOME": str(home)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=120)
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"inputs": TEXTS[:1]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "device cpu" in err


def test_every_predictor_format_has_its_device_check():
    assert set(DEVICE_CHECKS) == {format for _, format in FORMATS}


def test_onnx_runs_on_the_cpu_provider_unless_cuda_is_offered(onnx_bundle):
    assert onnx_providers("cpu") == [CPU_PROVIDER]
    assert onnx_providers("auto") == ([CUDA_PROVIDER, CPU_PROVIDER] if ORT_CUDA else [CPU_PROVIDER])
    with pytest.raises(FrugalError, match="no provider for 'mps'"):
        onnx_providers("mps")
    predictor = load_predictor(onnx_bundle, device="cpu")
    assert predictor.session.get_providers() == [CPU_PROVIDER]  # type: ignore[attr-defined]


@pytest.mark.skipif(ORT_CUDA, reason="this ONNX Runtime has its CUDA provider")
def test_onnx_on_cuda_without_the_provider_says_what_to_install(onnx_bundle):
    with pytest.raises(FrugalError, match=r"no CUDAExecutionProvider.*onnxruntime-gpu"):
        load_predictor(onnx_bundle, device="cuda")


def test_a_device_in_a_pipeline_is_checked_early_and_leaves_the_cache_key_alone(
    tiny_base, files, home, tmp_path
):
    spec = tmp_path / "p.yaml"
    pipeline = (
        "steps:\n"
        f"  - {{id: tune, tune: {{train: {files['train']}, method: head, base: '{tiny_base}'}}}}\n"
        f"  - {{id: check, eval: {{bundle: '${{tune.bundle_id}}', data: {files['test']}DEVICE}}}}\n"
    )
    spec.write_text(pipeline.replace("DEVICE", ", device: gpu"))
    with pytest.raises(FrugalError, match="unknown device 'gpu'"):
        run_pipeline(spec)
    spec.write_text(pipeline.replace("DEVICE", ""))
    first = run_pipeline(spec)
    spec.write_text(pipeline.replace("DEVICE", ", device: cpu"))
    again = run_pipeline(spec)
    assert [s.cached for s in first.steps] == [False, False]
    assert [s.cached for s in again.steps] == [True, True]  # where it ran is no input
    assert again.outputs("check") == first.outputs("check")


@needs_cuda
def test_cuda_predictions_match_the_cpu_within_half_precision(bundle_path):
    bundle = load_bundle(bundle_path)
    on_cpu = load_predictor(bundle, device="cpu").predict_proba(TEXTS)
    on_gpu = load_predictor(bundle, device="cuda")
    assert on_gpu.model.encoder.device.type == "cuda"  # type: ignore[attr-defined]
    probabilities = on_gpu.predict_proba(TEXTS)
    np.testing.assert_allclose(probabilities, on_cpu, atol=2e-2)  # bf16 / fp16 autocast
    assert (probabilities.argmax(1) == on_cpu.argmax(1)).all()


@needs_cuda
@pytest.mark.skipif(not ORT_CUDA, reason="this ONNX Runtime has no CUDA provider (onnxruntime-gpu)")
def test_onnx_on_a_gpu_runs_on_the_cuda_provider(onnx_bundle):
    on_cpu = load_predictor(onnx_bundle, device="cpu").predict_proba(TEXTS)
    predictor = load_predictor(onnx_bundle, device="cuda")
    assert predictor.session.get_providers()[0] == CUDA_PROVIDER  # type: ignore[attr-defined]
    np.testing.assert_allclose(predictor.predict_proba(TEXTS), on_cpu, atol=1e-3)


@needs_cuda
def test_distillation_trains_on_the_gpu(bundle_path, files, tmp_path):
    source = load_bundle(bundle_path)
    context = CompressContext(
        store=tmp_path, train=load_dataset(files["train"]), teacher=source, device="cuda"
    )
    student = apply_technique("distill", source, context, epochs=1)
    assert student.metrics["teacher_agreement"] > 0.5
    assert load_predictor(load_bundle(student.path)).predict_proba(TEXTS).shape == (4, 3)
