"""Does a compressed image model still agree with its source? Logits on the domain's own images.

The image counterpart of compress/checks.py (whose `agreement` both use): seeded samples of the
training images, and the logits of a PyTorch model or an ONNX graph on their preprocessed pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from frugalml.compress.checks import open_session
from frugalml.data.images import ImageDataset
from frugalml.models.vision import ImageModelConfig, preprocess
from frugalml.runtime.image_onnx_predictor import INPUT

BATCH = 64


def sample_rows(rows: int, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` of `rows` row indices drawn without replacement (seeded), in ascending order."""
    return np.sort(np.random.default_rng(seed).permutation(rows)[:n])


def sample_pixels(data: ImageDataset, n: int, config: ImageModelConfig, seed: int = 0) -> np.ndarray:
    """`sample_rows`' images as the model's float32 input."""
    return preprocess(data.images[sample_rows(len(data), n, seed)], config.mean, config.std)


@torch.inference_mode()
def torch_image_logits(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    model.eval()
    parts = [
        model(torch.from_numpy(pixels[s : s + BATCH])).float().numpy() for s in range(0, len(pixels), BATCH)
    ]
    return np.concatenate(parts)


def onnx_image_logits(path: Path, pixels: np.ndarray) -> np.ndarray:
    session = open_session(path)
    parts = [session.run(["logits"], {INPUT: pixels[s : s + BATCH]})[0] for s in range(0, len(pixels), BATCH)]
    return np.concatenate(parts)
