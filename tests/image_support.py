"""Tiny generated image data and a tiny trained image bundle, shared by the image tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from frugalml.bundle import IMAGE_TASK, Bundle, new_bundle_id, write_bundle
from frugalml.models.vision import (
    ImageModelConfig,
    build_image_model,
    channel_stats,
    preprocess,
    save_image_model,
)

SIZE = 16
LABELS = ("left", "right")


def blobs(n: int, seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, size, size, 1) greyscale images of a bright square on the left or the right half,
    on noise; and each one's class index (0: left, 1: right)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, size, size, 1)).astype(np.uint8)
    classes = rng.integers(0, 2, n)
    for image, side in zip(images, classes, strict=True):
        row = int(rng.integers(0, size - 5))
        column = int(rng.integers(0, size // 2 - 4)) + side * size // 2
        image[row : row + 5, column : column + 4] = rng.integers(180, 256)
    return images, classes


def write_npz(path: Path, n: int = 96, seed: int = 0) -> Path:
    """A MedMNIST-layout .npz with train, val and test splits of `blobs`."""
    arrays = {}
    for offset, split in enumerate(("train", "val", "test")):
        images, classes = blobs(n if split == "train" else n // 2, seed + offset)
        arrays[f"{split}_images"] = images[..., 0]
        arrays[f"{split}_labels"] = classes[:, None].astype(np.uint8)
    np.savez(path, **arrays)
    path.with_name(path.stem + ".labels.json").write_text('["left", "right"]')
    return path


def trained_bundle(store: Path, n: int = 128, steps: int = 25, seed: int = 0) -> Bundle:
    """A `cnn` bundle trained for `steps` steps on `blobs` (it tells left from right)."""
    torch.manual_seed(seed)
    images, classes = blobs(n, seed)
    mean, std = channel_stats(images)
    config = ImageModelConfig("cnn", 2, 1, SIZE, mean, std)
    model = build_image_model("cnn", 2, 1, SIZE)
    x, y = torch.from_numpy(preprocess(images, mean, std)), torch.from_numpy(classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for step in range(steps):
        rows = torch.arange(step * 32, step * 32 + 32) % n
        loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    bundle = Bundle(
        id=new_bundle_id(),
        name="blobs",
        labels=list(LABELS),
        base_model="cnn",
        method="scratch",
        task=IMAGE_TASK,
    )
    return write_bundle(store, bundle, lambda folder: save_image_model(folder, model, config))
