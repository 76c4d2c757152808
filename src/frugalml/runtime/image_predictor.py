"""PyTorch predictor of an image bundle: uint8 HWC images in, class probabilities out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from frugalml.bundle import Bundle
from frugalml.data.images import conform
from frugalml.devices import autocast, resolve_device
from frugalml.models.vision import ImageClassifier, ImageModelConfig, load_image_model, preprocess
from frugalml.runtime.predictor import softmax


class ImagePredictor:
    """Images of any size and channel count are converted to the model's (`conform`), normalised
    (`preprocess`) and run `batch_size` at a time."""

    def __init__(
        self,
        model: ImageClassifier,
        config: ImageModelConfig,
        labels: Sequence[str],
        bundle: Bundle | None = None,
        batch_size: int = 64,
        device: torch.device | str | None = None,
    ):
        self.device = next(model.parameters()).device if device is None else resolve_device(str(device))
        self.model = model.eval().to(self.device)
        self.config = config
        self.labels = list(labels)
        self.bundle = bundle
        self.batch_size = batch_size

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, threads: int | None = None, device: str | None = "cpu", **options
    ) -> ImagePredictor:
        placed = resolve_device(device)  # first: a device this machine lacks loads nothing
        if threads:
            torch.set_num_threads(threads)
        model, config = load_image_model(bundle)
        return cls(model, config, bundle.labels, bundle=bundle, device=placed, **options)

    def inputs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The model's float32 NCHW input for `images`."""
        size = (self.config.image_size, self.config.image_size)
        return preprocess(conform(images, self.config.channels, size), self.config.mean, self.config.std)

    @torch.inference_mode()
    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        out = np.empty((len(images), len(self.labels)), dtype=np.float32)
        for start in range(0, len(images), self.batch_size):
            x = torch.from_numpy(self.inputs(images[start : start + self.batch_size])).to(self.device)
            with autocast(self.device):
                out[start : start + len(x)] = self.model(x).float().cpu().numpy()
        return softmax(out)

    @torch.inference_mode()
    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Penultimate-layer embeddings, (N, width)."""
        parts = [
            self.model.features(
                torch.from_numpy(self.inputs(images[s : s + self.batch_size])).to(self.device)
            )
            .float()
            .cpu()
            .numpy()
            for s in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.model.width), dtype=np.float32)

    def warmup(self) -> None:
        size = self.config.image_size
        self.predict_proba([np.zeros((size, size, self.config.channels), dtype=np.uint8)] * 2)
