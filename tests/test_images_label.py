"""Labelling commands on images: issues, suggest and auto on a trained image bundle's embeddings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from image_support import LABELS, blobs, trained_bundle
from PIL import Image
from test_cli import run_cli

from frugalml.data.images import load_images


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return trained_bundle(tmp_path_factory.mktemp("label-images"))


def write_folder(root, images, classes):
    """One sub-folder per class of PNG files; the paths, in order."""
    paths = []
    for i, (image, index) in enumerate(zip(images, classes, strict=True)):
        path = root / LABELS[index] / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0]).save(path)
        paths.append(path)
    return paths


def json_of(capsys, *args):
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_issues_finds_the_flipped_labels_of_images(capsys, home, bundle, tmp_path):
    images, classes = blobs(40, seed=5)
    flipped = [3, 11, 20, 31]
    classes[flipped] = 1 - classes[flipped]
    paths = write_folder(tmp_path / "data", images, classes)
    found = json_of(capsys, "label", "issues", str(tmp_path / "data"), "--bundle", str(bundle.path))
    assert found["rows"] == 40
    ids = [issue["id"] for issue in found["issues"]]
    wrong = {str(paths[i].relative_to(tmp_path / "data")) for i in flipped}
    assert wrong <= set(ids[: len(wrong) + 2])
    assert all(issue["text"] is None for issue in found["issues"])
    first = next(issue for issue in found["issues"] if issue["id"] in wrong)
    assert first["suggested_label"] != first["given_label"]


def test_image_data_without_a_bundle_is_one_clear_error(capsys, home, tmp_path):
    images, classes = blobs(8, seed=1)
    write_folder(tmp_path / "data", images, classes)
    code, out, err = run_cli(capsys, "label", "issues", str(tmp_path / "data"))
    assert code != 0 and "needs --bundle" in err and "Traceback" not in err + out


def test_suggest_picks_pool_images_as_label_studio_image_tasks(capsys, home, bundle, tmp_path):
    images, classes = blobs(12, seed=2)
    write_folder(tmp_path / "seed", images, classes)
    pool_images, _ = blobs(30, seed=3)
    np.savez(tmp_path / "pool.npz", train_images=pool_images[..., 0])
    tasks = tmp_path / "tasks.json"
    found = json_of(
        capsys,
        "label",
        "suggest",
        str(tmp_path / "pool.npz"),
        "--labelled",
        str(tmp_path / "seed"),
        "--budget",
        "5",
        "--bundle",
        str(bundle.path),
        "--out",
        str(tasks),
        # The tiny model maps most images of a class to one point: no pair counts as a copy here.
        "--dup-threshold",
        "1.0",
    )
    assert found["suggested"] == 5 and {r["predicted_label"] for r in found["rows"]} <= set(LABELS)
    written = json.loads(tasks.read_text())
    assert [task["data"]["image"] for task in written] == [r["id"] for r in found["rows"]]
    assert all(r["id"].startswith("train/") for r in found["rows"])
    assert '<Image name="image"' in (tmp_path / "tasks.label_config.xml").read_text()


def test_auto_labels_a_pool_of_image_files_and_tune_can_read_the_result(capsys, home, bundle, tmp_path):
    images, classes = blobs(24, seed=6)
    write_folder(tmp_path / "seed", images, classes)
    pool_images, pool_classes = blobs(40, seed=7)
    pool_paths = write_folder(tmp_path / "pool-files", pool_images, pool_classes)
    truth = {p.name: LABELS[c] for p, c in zip(pool_paths, pool_classes, strict=True)}
    table = pd.DataFrame({"image": [str(p.relative_to(tmp_path)) for p in pool_paths]})
    table.to_csv(tmp_path / "pool.csv", index=False)
    out, review = tmp_path / "out" / "labelled.csv", tmp_path / "out" / "review.csv"
    summary = json_of(
        capsys,
        "label",
        "auto",
        str(tmp_path / "seed"),
        str(tmp_path / "pool.csv"),
        "--bundle",
        str(bundle.path),
        "--target-precision",
        "0.9",
        "--out",
        str(out),
        "--review",
        str(review),
    )
    assert summary["labelled"] == 24 and summary["pool"] == 40
    assert summary["accepted"] + summary["review"] == 40 and summary["accepted"] > 0
    labelled = load_images(out)  # the written table names the image files relative to itself
    assert len(labelled) == 24 + summary["accepted"]
    written = pd.read_csv(out)
    auto = written[written["source"] == "auto"]
    correct = [
        truth[image.rsplit("/", 1)[-1]] == label
        for image, label in zip(auto["image"], auto["label"], strict=True)
    ]
    assert np.mean(correct) >= 0.9
    assert len(pd.read_csv(review)) == summary["review"]


def test_auto_writes_npz_for_a_npz_pool(capsys, home, bundle, tmp_path):
    images, classes = blobs(24, seed=8)
    write_folder(tmp_path / "seed", images, classes)
    pool_images, _ = blobs(20, seed=9)
    np.savez(tmp_path / "pool.npz", train_images=pool_images[..., 0])
    summary = json_of(
        capsys,
        "label",
        "auto",
        str(tmp_path / "seed"),
        str(tmp_path / "pool.npz"),
        "--bundle",
        str(bundle.path),
    )
    assert summary["out"].endswith("pool.labelled.npz")
    labelled = load_images(summary["out"])
    assert len(labelled) == 24 + summary["accepted"] and set(labelled.labels) <= set(LABELS)
