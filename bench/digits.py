"""Another small image set, the image defaults untouched: `frugalml tune` (the default model)
against `frugalml tune --model resnet18` on the same split, then `frugalml compress`.

    flock /tmp/frugalml-cpu.lock .venv/bin/python bench/digits.py     # a few minutes on 2 cores

Issue 26 asks that the defaults tuned on PneumoniaMNIST reach the published ResNet-18 level on
other small image sets without per-set tuning. No other MedMNIST set can be fetched offline, so
this benchmark takes the one image set that ships inside a pinned dependency: scikit-learn's
handwritten digits (UCI, 1,797 8x8 greyscale images, 10 classes). It writes them in the MedMNIST
layout (stratified, seeded: 70 % train, 10 % val, 20 % test) and trains ResNet-18 from scratch in
the same run as the anchor, beside logistic regression on raw pixels. Every model is selected on
val and scored once on test (accuracy, one-vs-rest macro ROC AUC).

Writes bench/results/digits.json and prints the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from _common import HOME, RESULTS, write_results
from pneumonia import THREADS, frugalml

DATA = HOME / "data" / "digits.npz"
SPLITS = {"train": 0.7, "val": 0.1, "test": 0.2}


def write_digits(path) -> dict[str, int]:
    """scikit-learn's digits as uint8 images in MedMNIST's npz layout, split by class, seed 0;
    the number of images per split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    labels = digits.target.reshape(-1, 1)
    train, rest = train_test_split(
        np.arange(len(labels)), train_size=SPLITS["train"], stratify=labels, random_state=0
    )
    val, test = train_test_split(rest, test_size=2 / 3, stratify=labels[rest], random_state=0)
    arrays = {}
    for split, rows in (("train", train), ("val", val), ("test", test)):
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images[rows], labels[rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return {split: len(arrays[f"{split}_labels"]) for split in SPLITS}


def pixel_baseline(path) -> dict:
    """Logistic regression on the raw pixels: the floor every network should clear."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score

    data = np.load(path)
    flat = {s: data[f"{s}_images"].reshape(len(data[f"{s}_images"]), -1) / 255 for s in ("train", "test")}
    started = time.perf_counter()
    model = LogisticRegression(max_iter=2000).fit(flat["train"], data["train_labels"].ravel())
    truth = data["test_labels"].ravel()
    return {
        "model": "logistic regression on pixels",
        "accuracy": float(accuracy_score(truth, model.predict(flat["test"]))),
        "roc_auc": float(roc_auc_score(truth, model.predict_proba(flat["test"]), multi_class="ovr")),
        "wall_seconds": time.perf_counter() - started,
    }


def tuned_row(label: str, *model: str) -> dict:
    summary, wall = frugalml("tune", str(DATA), "--eval", str(DATA), *model)
    return {
        "model": label,
        "bundle_path": summary["bundle_path"],
        "accuracy": summary["metrics"]["accuracy"],
        "roc_auc": summary["metrics"].get("roc_auc"),
        "val_accuracy": summary["metrics"].get("val_accuracy"),
        "epochs_run": summary["epochs_run"],
        "wall_seconds": wall,
        "size_bytes": summary["size_bytes"],
    }


def compressed_row(teacher: dict) -> dict:
    compressed, wall = frugalml(
        "compress",
        teacher["bundle_path"],
        "--data",
        str(DATA),
        "--eval",
        str(DATA),
        "--threads",
        str(THREADS),
    )
    selected = compressed["selected"] or compressed["baseline"]
    scored, _ = frugalml("eval", selected["bundle_path"], str(DATA))  # the npz's test split
    return {
        "model": f"{teacher['model']} compressed: {selected['recipe']}",
        "bundle_path": selected["bundle_path"],
        "accuracy": scored["accuracy"],
        "roc_auc": scored.get("roc_auc"),
        "val_accuracy": selected["accuracy"],
        "epochs_run": None,
        "wall_seconds": wall,
        "size_bytes": selected["size_bytes"],
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    sizes = write_digits(DATA)
    baseline = pixel_baseline(DATA)
    print(f"pixels: test ACC {baseline['accuracy']:.3f}; training ...", flush=True)
    default = tuned_row("defaults (cnn)")
    anchor = tuned_row("resnet18 from scratch", "--model", "resnet18")
    rows = [baseline, default, anchor, compressed_row(default)]
    write_results(
        RESULTS / "digits.json",
        {
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": THREADS},
            "data": "scikit-learn load_digits, stratified 70/10/20 split, seed 0",
            "sizes": sizes,
            "rows": rows,
            "defaults_vs_resnet18_points": 100 * (default["accuracy"] - anchor["accuracy"]),
        },
    )
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="scikit-learn digits, test split")
    for column in ("model", "test ACC", "test AUC", "val ACC", "epochs", "bytes", "wall s"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["model"],
            f"{row['accuracy']:.3f}",
            f"{row['roc_auc']:.3f}" if row.get("roc_auc") is not None else "-",
            f"{row['val_accuracy']:.3f}" if row.get("val_accuracy") is not None else "-",
            str(row.get("epochs_run") or "-"),
            f"{row['size_bytes']:,}" if row.get("size_bytes") else "-",
            f"{row['wall_seconds']:.0f}",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
