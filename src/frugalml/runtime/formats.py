"""Which predictor opens a bundle of each format: one literal table."""

from __future__ import annotations

from collections.abc import Callable

from frugalml.bundle import Bundle
from frugalml.errors import BundleError
from frugalml.runtime.onnx_predictor import OnnxPredictor
from frugalml.runtime.predictor import Predictor
from frugalml.runtime.torch_predictor import TorchPredictor

# bundle format -> factory(bundle, **options)
FORMATS: dict[str, Callable[..., Predictor]] = {
    "torch": TorchPredictor.from_bundle,
    "onnx": OnnxPredictor,
}


def load_predictor(bundle: Bundle, **options: object) -> Predictor:
    """The predictor for `bundle`, built with the format's own options (threads, batch_size ...)."""
    if bundle.format not in FORMATS:
        raise BundleError(
            f"bundle {bundle.id} has format {bundle.format!r}; this install reads {sorted(FORMATS)}"
        )
    return FORMATS[bundle.format](bundle, **options)
