"""Compression of image bundles: each technique on a tiny CNN, the `compress` search, and a
pipeline from tuning to serving the compressed model."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import onnx
import pytest
import torch
from image_support import LABELS, SIZE, trained_bundle, write_npz
from PIL import Image
from test_cli import run_cli
from test_serve_support import running

from frugalml.bundle import Bundle, load_bundle
from frugalml.compress import CompressContext, apply_technique
from frugalml.compress.search import describe, recipes, step
from frugalml.data.images import load_images
from frugalml.errors import FrugalError
from frugalml.models.vision import load_image_model
from frugalml.pipeline import run_pipeline
from frugalml.runtime import load_predictor
from frugalml.runtime.image_onnx_predictor import ImageOnnxPredictor
from frugalml.serve import create_app
from frugalml.serve.config import ServeConfig

TECHNIQUES = ["onnx", "int8", "int8-static", "trim", "prune", "distill"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("images-compress")


@pytest.fixture(scope="module")
def npz(root):
    return write_npz(root / "blobs.npz", n=128)


@pytest.fixture(scope="module")
def teacher(root) -> Bundle:
    return trained_bundle(root / "teacher")


@pytest.fixture(scope="module")
def context(root, npz, teacher) -> CompressContext:
    return CompressContext(store=root / "bundles", train=load_images(npz), teacher=teacher)


@pytest.fixture(scope="module")
def onnx_bundle(teacher, context) -> Bundle:
    return apply_technique("onnx", teacher, context)


@pytest.fixture(scope="module")
def test_images(npz):
    return load_images(npz, split="test")


def probabilities(bundle: Bundle, images) -> np.ndarray:
    return load_predictor(load_bundle(bundle.path)).predict_proba(images)


def accuracy(bundle: Bundle, data) -> float:
    predicted = np.asarray(bundle.labels)[probabilities(bundle, data.images).argmax(1)]
    return float((predicted == np.asarray(data.labels)).mean())


def test_the_teacher_learned_the_task(teacher, test_images):
    assert accuracy(teacher, test_images) >= 0.9


def test_onnx_export_takes_pixel_values_and_matches_torch(teacher, onnx_bundle, test_images):
    assert onnx_bundle.task == teacher.task and onnx_bundle.format == "onnx"
    assert onnx_bundle.parents == [teacher.id] and onnx_bundle.metrics["max_abs_diff"] < 1e-3
    graph = onnx.load(onnx_bundle.path / "model.onnx").graph
    assert graph.input[0].name == "pixel_values"
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, SIZE, SIZE]
    predictor = load_predictor(load_bundle(onnx_bundle.path))
    assert isinstance(predictor, ImageOnnxPredictor) and predictor.labels == list(LABELS)
    images = list(test_images.images[:9])
    np.testing.assert_allclose(predictor.predict_proba(images), probabilities(teacher, images), atol=1e-5)
    # Another size and colour is converted to the model's input, as the PyTorch predictor does.
    assert predictor.predict_proba([np.zeros((30, 20, 3), np.uint8)]).shape == (1, 2)


def test_static_int8_is_qdq_per_channel_smaller_and_agrees(onnx_bundle, context, test_images):
    int8 = apply_technique("int8-static", onnx_bundle, context)
    assert int8.precision == "int8" and int8.parents == [onnx_bundle.id]
    graph = onnx.load(int8.path / "model.onnx").graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # Per-channel: a convolution weight's scale holds one value per output channel.
    weights = {node.input[0]: node for node in graph.node if node.op_type == "DequantizeLinear"}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    scales = [
        onnx.numpy_helper.to_array(initializers[n.input[1]])
        for n in weights.values()
        if n.input[0] in initializers
    ]
    assert any(scale.size > 1 for scale in scales)
    assert int8.size_bytes < onnx_bundle.size_bytes / 3
    assert int8.metrics["agreement"] >= 0.95
    images = test_images.images
    same = probabilities(int8, images).argmax(1) == probabilities(onnx_bundle, images).argmax(1)
    assert same.mean() >= 0.95
    with pytest.raises(FrugalError, match="int8 already"):
        apply_technique("int8-static", int8, context)


def test_channel_pruning_shrinks_the_model_and_the_pruned_bundle_reloads(teacher, context, test_images):
    pruned = apply_technique("prune", teacher, context, channels=0.5)
    assert pruned.metrics["parameters"] < pruned.metrics["parameters_before"] / 3
    model, config = load_image_model(load_bundle(pruned.path))
    assert sum(p.numel() for p in model.parameters()) == pruned.metrics["parameters"]
    assert model.width == model.head.in_features < 128 and config.architecture == "cnn"
    alone = accuracy(pruned, test_images)
    # Fine-tuning on the teacher's soft labels, then export: a smaller model that still works.
    tuned = apply_technique("distill", pruned, context, epochs=8)
    assert tuned.metrics["parameters"] == pruned.metrics["parameters"]
    assert accuracy(tuned, test_images) >= max(alone, 0.8)
    exported = apply_technique("onnx", tuned, context)
    assert exported.size_bytes < apply_technique("onnx", teacher, context).size_bytes / 3


def test_distilling_the_teacher_itself_trains_a_new_small_cnn(teacher, context, test_images):
    student = apply_technique("distill", teacher, context, epochs=3)
    assert student.metrics["student"] == "cnn" and student.config["options"]["student"] == "cnn"
    assert load_image_model(load_bundle(student.path))[1].architecture == "cnn"
    assert probabilities(student, test_images.images).shape == (len(test_images), 2)


@pytest.mark.parametrize("name", ["trim", "int8"])
def test_text_only_techniques_refuse_image_bundles(name, teacher, onnx_bundle, context):
    source = onnx_bundle if name == "int8" else teacher
    with pytest.raises(FrugalError, match="does not apply to image-classification bundles"):
        apply_technique(name, source, context)


def test_the_image_search_plans_channel_students_and_no_text_technique():
    plan = recipes(TECHNIQUES, "torch", task="image-classification", channels=(0.5,))
    assert [describe(r) for r in plan] == [
        "onnx",
        "onnx + int8-static",
        "prune(channels=0.5) + distill",
        "prune(channels=0.5) + distill + onnx",
        "prune(channels=0.5) + distill + onnx + int8-static",
    ]
    larger = recipes(TECHNIQUES, "torch", task="image-classification", channels=(0.5,), small_student=True)
    assert (step("distill"),) in larger
    assert recipes(TECHNIQUES, "onnx", task="image-classification") == [(step("int8-static"),)]


def test_compress_command_selects_an_image_candidate_within_budget(capsys, home, teacher, npz, tmp_path):
    code, out, err = run_cli(
        capsys,
        "compress",
        str(teacher.path),
        "--data",
        str(npz),
        "--eval",
        str(npz),  # its val split: the test split stays unseen
        "--max-drop",
        "5",
        "--distill-epochs",
        "3",
        "--threads",
        "1",
        "--latency-runs",
        "5",
        "--measure-seconds",
        "0.1",
        "--out",
        str(tmp_path / "report"),
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert not result["failed"]
    recipes_built = {c["recipe"] for c in result["candidates"]}
    assert "prune(channels=0.5) + distill + onnx + int8-static" in recipes_built
    selected = result["selected"]
    assert selected["accuracy_drop"] <= 5 and selected["size_bytes"] < result["baseline"]["size_bytes"]
    assert selected["batch32_per_s"] > 0 and selected["p50_ms"] > 0
    chosen = load_bundle(selected["bundle_path"])
    assert chosen.task == "image-classification"
    assert load_predictor(chosen).predict_proba(load_images(npz, split="test").images[:4]).shape == (4, 2)


def test_a_pipeline_tunes_checks_and_compresses_images_then_reuses_its_cache(home, npz, tmp_path):
    spec = tmp_path / "images.yaml"
    spec.write_text(
        "steps:\n"
        f"  - id: tune\n    tune_images: {{train: {npz}, eval: {npz}, epochs: 3, name: blobs}}\n"
        f"  - id: issues\n    label_issues: {{data: {npz}, bundle: '${{tune.bundle_id}}'}}\n"
        "  - id: compress\n"
        f"    compress: {{bundle: '${{tune.bundle_id}}', train: {npz}, eval: {npz}, max_drop: 100,\n"
        "               techniques: [onnx, int8-static], threads: 1, latency_runs: 5, measure_seconds: 0.1}\n"
    )
    result = run_pipeline(spec)
    assert result.outputs("tune")["task"] == "image-classification"
    assert result.outputs("issues")["rows"] == 128
    compressed = load_bundle(result.outputs("compress")["bundle_path"])
    assert compressed.task == "image-classification" and compressed.precision == "int8"
    assert all(step.cached for step in run_pipeline(spec).steps)
    # The selected int8 ONNX bundle serves PNG uploads as its predictor answers them.
    predictor = load_predictor(compressed)
    arrays = list(load_images(npz, split="test").images[:6])
    expected = [predictor.labels[i] for i in predictor.predict_proba(arrays).argmax(1)]
    with running(create_app(predictor, ServeConfig())) as (url, _):
        items = [{"b64": base64.b64encode(png(a[:, :, 0])).decode()} for a in arrays]
        answer = httpx.post(f"{url}/v1/predict", json={"inputs": items})
    assert answer.status_code == 200, answer.text
    assert [p["label"] for p in answer.json()["predictions"]] == expected


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_distillation_weighs_hard_labels_by_class_as_the_teacher_was_tuned(teacher, context):
    from dataclasses import replace

    from frugalml.compress.distill import distillation_loss, teacher_class_weight

    def tuned_with(mode: str | None) -> CompressContext:
        return replace(context, teacher=replace(teacher, config={**teacher.config, "class_weight": mode}))

    skewed = ["0"] * 6 + ["1"] * 2
    weight = teacher_class_weight(tuned_with("auto"), skewed, ["0", "1"])
    assert weight is not None and torch.allclose(weight, torch.tensor([8 / 12, 8 / 4]))
    assert teacher_class_weight(tuned_with("auto"), ["0", "1"] * 4, ["0", "1"]) is None  # not skewed
    assert teacher_class_weight(tuned_with(None), skewed, ["0", "1"]) is None

    student, target = torch.randn(8, 2), torch.randn(8, 2)
    labels = torch.tensor([0] * 6 + [1] * 2)
    weighted = distillation_loss(student, target, labels, 2.0, 1.0, weight)  # alpha 1: CE alone
    expected = torch.nn.functional.cross_entropy(student, labels, weight=weight)
    assert weighted.item() == pytest.approx(expected.item())
    assert weighted.item() != pytest.approx(distillation_loss(student, target, labels, 2.0, 1.0).item())
