"""Tune and eval on tiny generated images: the same commands, bundle and lineage as for texts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import run_cli

from frugalml.bundle import load_bundle
from frugalml.data.images import load_images
from frugalml.evaluate.images import most_confidently_wrong
from frugalml.evaluate.metrics import roc_auc
from frugalml.lineage import open_store
from frugalml.runtime import load_predictor
from frugalml.runtime.image_predictor import ImagePredictor
from frugalml.tune.augment import parse_augment
from frugalml.tune.balance import class_weights
from frugalml.tune.config import ImageTuneConfig
from frugalml.tune.image_workflow import load_image_splits, save_image_bundle
from frugalml.tune.images import tune_images

SPLITS = {"train": 96, "val": 32, "test": 40}


def squares(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Noise, with a bright square in the middle for class 1: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, (n, size, size), dtype=np.uint8)
    images[labels == 1, size // 4 : -size // 4, size // 4 : -size // 4] += 150
    return images, labels.reshape(-1, 1).astype(np.uint8)


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    arrays = {}
    for seed, (split, n) in enumerate(SPLITS.items()):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = squares(n, seed)
    np.savez(tmp_path / "tiny.npz", **arrays)
    return tmp_path / "tiny.npz"


FAST = ImageTuneConfig(epochs=4, batch_size=16, lr=1e-2)


def test_tuned_model_saves_and_reloads_to_the_same_predictions(tiny_npz, tmp_path):
    train, val = load_image_splits(tiny_npz, FAST)
    assert (len(train), len(val)) == (96, 32)  # the file's own validation split
    result = tune_images(train, val, FAST)
    assert result.config.architecture == "cnn" and result.labels == ["0", "1"]
    assert 1 <= result.epochs_run <= 4 and len(result.history) == result.epochs_run
    bundle = save_image_bundle(result, tmp_path / "bundles", "tiny", {}, FAST, train.sha256)
    reloaded = load_predictor(load_bundle(bundle.path))
    test = load_images(tiny_npz, split="test")
    images = list(test.images)
    expected = ImagePredictor(result.model, result.config, result.labels).predict_proba(images)
    assert np.allclose(reloaded.predict_proba(images), expected, atol=1e-6)
    assert reloaded.embed(images[:3]).shape == (3, 64)  # the penultimate layer, for labelling


def test_the_same_seed_trains_the_same_model(tiny_npz):
    train, val = load_image_splits(tiny_npz, FAST)
    config = ImageTuneConfig(epochs=1, batch_size=32)
    first, second = tune_images(train, val, config), tune_images(train, val, config)
    assert first.history == second.history


def test_tune_and_eval_images_through_the_cli(capsys, tiny_npz, home, tmp_path):
    code, out, err = run_cli(
        capsys,
        "tune",
        str(tiny_npz),
        "--eval",
        str(tiny_npz),
        "--epochs",
        "6",
        "--batch-size",
        "16",
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["task"] == "image-classification" and summary["base"] == "cnn"
    assert summary["metrics"]["eval_n"] == SPLITS["test"]  # --eval of a .npz: its test split
    assert {"accuracy", "macro_f1", "roc_auc", "val_accuracy", "val_auc"} <= set(summary["metrics"])
    bundle = load_bundle(summary["bundle_path"])
    assert bundle.task == "image-classification" and bundle.format == "torch"
    assert open_store().find_bundle(bundle.id)["id"] == bundle.id  # the same lineage store as texts

    confusion, wrong = tmp_path / "cm.png", tmp_path / "wrong"
    code, out, err = run_cli(
        capsys,
        "eval",
        bundle.id,
        str(tiny_npz),
        "--confusion",
        str(confusion),
        "--wrong",
        str(wrong),
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == SPLITS["test"] and 0 <= report["roc_auc"] <= 1 and "images_per_second" in report
    assert report["wrong_png"] == str(tmp_path / "wrong.png")
    for png in (confusion, tmp_path / "wrong.png"):
        assert Image.open(png).format == "PNG"

    scan = tmp_path / "scan.png"
    Image.fromarray(squares(1, 5)[0][0]).save(scan)
    code, out, err = run_cli(capsys, "predict", bundle.id, str(scan), "--json")
    assert code == 0, err
    assert json.loads(out)[0]["text"] == str(scan) and json.loads(out)[0]["label"] in ("0", "1")


def test_a_folder_of_mixed_sizes_tunes_with_image_size(capsys, home, tmp_path):
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(12):
            side = 20 + i % 3
            array = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(array).save(tmp_path / "data" / label / f"{i}.png")
    code, _, err = run_cli(capsys, "tune", str(tmp_path / "data"), "--epochs", "1")
    assert code == 2 and "resize them all with --image-size" in err
    code, out, err = run_cli(
        capsys, "tune", str(tmp_path / "data"), "--epochs", "1", "--batch-size", "4", "--image-size", "16",
        "--model", "mobilenet_v3_small", "--augment", "flip,rotate:5", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["base"] == "mobilenet_v3_small"


def test_options_of_the_other_task_are_refused(capsys, tiny_npz, intent_files, home):
    code, _, err = run_cli(capsys, "tune", str(tiny_npz), "--method", "lora", "--robust", "--epochs", "1")
    assert code == 2 and "--method, --robust: not for this data" in err and "holds images" in err
    code, _, err = run_cli(capsys, "tune", str(intent_files["train"]), "--image-size", "28")
    assert code == 2 and "--image-size: not for this data" in err


def test_augment_specs_are_parsed_and_checked():
    assert parse_augment("auto", 28) == {"flip": 0.5, "rotate": 10.0, "crop": 0.85, "jitter": 0.2}
    assert parse_augment("auto", 224)["crop"] == 0.6
    assert parse_augment("none", 28) == {}
    assert parse_augment("rotate:5,vflip", 28) == {"rotate": 5.0, "vflip": 0.5}
    for bad, message in (("rotate:x", "not a number"), ("crop:2", "must be in"), ("zoom", "unknown")):
        with pytest.raises(Exception, match=message):
            parse_augment(bad, 28)


def test_class_weights_balance_skewed_classes_only():
    assert class_weights(["a", "b"] * 5, ["a", "b"], "auto") is None
    weights = class_weights(["a"] * 8 + ["b"] * 2, ["a", "b"], "auto")
    assert weights is not None and np.allclose(weights, [10 / 16, 10 / 4])
    assert class_weights(["a"] * 8 + ["b"] * 2, ["a", "b"], None) is None


def test_roc_auc_binary_and_one_vs_rest():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert roc_auc(["n", "p", "p", "n"], probabilities, ["n", "p"]) == 0.75
    assert roc_auc(["n", "n"], probabilities[:2], ["n", "p"]) is None
    three = np.eye(3)[[0, 1, 2, 0]]
    assert roc_auc(["a", "b", "c", "a"], three, ["a", "b", "c"]) == 1.0
    assert most_confidently_wrong(["n", "p", "p", "n"], ["n", "p"], probabilities, 5) == [3, 2]


def test_a_pipeline_tunes_and_evaluates_images_then_reuses_them(tiny_npz, home):
    from frugalml.pipeline import run_pipeline

    spec = tiny_npz.parent / "p.yaml"
    spec.write_text(
        "name: xray\nsteps:\n"
        "  - id: tune\n    tune_images: {train: tiny.npz, eval: tiny.npz, epochs: 2, batch_size: 16}\n"
        '  - id: check\n    eval: {bundle: "${tune.bundle_id}", data: tiny.npz}\n'
    )
    first = run_pipeline(spec)
    assert [s.cached for s in first.steps] == [False, False]
    assert first.outputs("tune")["task"] == "image-classification"
    assert first.outputs("check")["accuracy"] == first.outputs("tune")["metrics"]["accuracy"]
    assert first.outputs("check")["n"] == SPLITS["test"]
    assert [s.cached for s in run_pipeline(spec).steps] == [True, True]
