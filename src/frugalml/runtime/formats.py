"""Which predictor opens a bundle of each format: one literal table."""

from __future__ import annotations

from collections.abc import Callable

from frugalml.bundle import Bundle
from frugalml.devices import onnx_providers, resolve_device
from frugalml.errors import BundleError
from frugalml.runtime.onnx_predictor import OnnxPredictor
from frugalml.runtime.predictor import Predictor
from frugalml.runtime.torch_predictor import TorchPredictor

# bundle format -> factory(bundle, device=..., **options)
FORMATS: dict[str, Callable[..., Predictor]] = {
    "torch": TorchPredictor.from_bundle,
    "onnx": OnnxPredictor,
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
    if bundle.format not in FORMATS:
        raise BundleError(
            f"bundle {bundle.id} has format {bundle.format!r}; this install reads {sorted(FORMATS)}"
        )
    return FORMATS[bundle.format](bundle, device=device, **options)
