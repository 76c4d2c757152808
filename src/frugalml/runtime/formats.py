"""Which predictor opens a bundle of each task and format: one literal table."""

from __future__ import annotations

from collections.abc import Callable

from frugalml.bundle import IMAGE_TASK, TEXT_TASK, Bundle
from frugalml.devices import onnx_providers, resolve_device
from frugalml.errors import BundleError
from frugalml.runtime.image_onnx_predictor import ImageOnnxPredictor
from frugalml.runtime.image_predictor import ImagePredictor
from frugalml.runtime.onnx_predictor import OnnxPredictor
from frugalml.runtime.predictor import Predictor
from frugalml.runtime.torch_predictor import TorchPredictor

# (bundle task, bundle format) -> factory(bundle, device=..., **options)
FORMATS: dict[tuple[str, str], Callable[..., Predictor]] = {
    (TEXT_TASK, "torch"): TorchPredictor.from_bundle,
    (TEXT_TASK, "onnx"): OnnxPredictor,
    (IMAGE_TASK, "torch"): ImagePredictor.from_bundle,
    (IMAGE_TASK, "onnx"): ImageOnnxPredictor,
}

# bundle format -> check(device name): refuses a device its predictor cannot run on here
DEVICE_CHECKS: dict[str, Callable[[str | None], object]] = {
    "torch": resolve_device,
    "onnx": onnx_providers,
}


def check_device(bundle: Bundle, device: str | None) -> None:
    """Refuse, before anything loads, a device that `bundle`'s predictor cannot run on here."""
    if bundle.format in DEVICE_CHECKS:
        DEVICE_CHECKS[bundle.format](device)


def load_predictor(bundle: Bundle, device: str | None = "cpu", **options: object) -> Predictor:
    """The predictor for `bundle` on `device` (frugalml.devices: auto, cpu, cuda[:N], mps), built
    with the format's own options (threads, batch_size ...)."""
    key = (bundle.task, bundle.format)
    if key not in FORMATS:
        known = ", ".join(f"{task} {format}" for task, format in FORMATS)
        raise BundleError(
            f"bundle {bundle.id} is a {bundle.task} model of format {bundle.format!r}; "
            f"this install reads {known}"
        )
    return FORMATS[key](bundle, device=device, **options)
