"""ONNX Runtime predictor of an image bundle: uint8 HWC images in, class probabilities out.

ONNX image bundle contract (compress/image_export.py writes it): `model.onnx` takes float32
`pixel_values` of shape [batch, channels, size, size], the output of `models.vision.preprocess`,
and returns float `logits` [batch, labels]; `image_config.json` beside it says the channels, size
and normalisation. Decoding, resizing and normalising happen here in NumPy, as for the PyTorch
predictor, so both formats see the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from frugalml.bundle import Bundle
from frugalml.data.images import conform
from frugalml.devices import onnx_providers, parse_device
from frugalml.errors import BundleError
from frugalml.models.vision import load_image_config, preprocess
from frugalml.runtime.onnx_predictor import ONNX_FILE, open_bundle_session
from frugalml.runtime.predictor import softmax

INPUT = "pixel_values"


class ImageOnnxPredictor:
    """Images of any size and channel count are converted to the model's (`conform`),
    normalised (`preprocess`) and run `batch_size` at a time."""

    def __init__(
        self,
        bundle: Bundle,
        batch_size: int = 64,
        threads: int | None = None,
        device: str | None = "cpu",
    ):
        assert bundle.path is not None
        device = parse_device(device)
        providers = onnx_providers(device)  # first: a device this machine lacks loads nothing
        self.bundle = bundle
        self.labels = list(bundle.labels)
        self.batch_size = batch_size
        self.config = load_image_config(bundle)  # first: refuses a folder holding unlisted files
        self.session = open_bundle_session(bundle, device, providers, threads)
        names = [i.name for i in self.session.get_inputs()]
        if names != [INPUT]:
            raise BundleError(f"bundle {bundle.id}: {ONNX_FILE} takes {names}, not [{INPUT!r}]")

    def inputs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The model's float32 NCHW input for `images`."""
        size = (self.config.image_size, self.config.image_size)
        return preprocess(conform(images, self.config.channels, size), self.config.mean, self.config.std)

    def logits(self, pixel_values: np.ndarray) -> np.ndarray:
        """Logits of already preprocessed input, `batch_size` rows at a time."""
        out = np.empty((len(pixel_values), len(self.labels)), dtype=np.float32)
        for start in range(0, len(pixel_values), self.batch_size):
            batch = pixel_values[start : start + self.batch_size]
            out[start : start + len(batch)] = self.session.run(["logits"], {INPUT: batch})[0]
        return out

    def predict_proba(self, images: Sequence[np.ndarray]) -> np.ndarray:
        if not len(images):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return softmax(self.logits(self.inputs(images)))

    def warmup(self) -> None:
        size = self.config.image_size
        self.predict_proba([np.zeros((size, size, self.config.channels), dtype=np.uint8)] * 2)
