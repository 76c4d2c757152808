"""Static int8 of an ONNX image bundle: QDQ, per-channel int8 weights, activation ranges
calibrated on training images.

Convolutions and the head's matrix product run as int8 kernels; each activation's range is fixed
ahead of time from calibration batches (MinMax), so no per-call range scan is needed. The
agreement with the fp32 source on a different draw of images goes into the bundle's metrics.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from frugalml.bundle import Bundle
from frugalml.compress.checks import agreement
from frugalml.compress.context import CompressContext, derived_bundle
from frugalml.compress.image_checks import onnx_image_logits, sample_pixels
from frugalml.compress.quantize import quiet_quantizer
from frugalml.errors import FrugalError
from frugalml.models.vision import CONFIG_FILE, load_image_config
from frugalml.runtime.image_onnx_predictor import INPUT, ONNX_FILE


class ImageCalibration(CalibrationDataReader):
    """Feeds batches of preprocessed images to the calibrator."""

    def __init__(self, pixels: np.ndarray, batch_size: int = 32):
        self._feeds: Iterator[dict[str, np.ndarray]] = (
            {INPUT: pixels[s : s + batch_size]} for s in range(0, len(pixels), batch_size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_image_file(source: Path, target: Path, calibration: CalibrationDataReader) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet_quantizer():
        # Pre-processing folds batch normalisation into the convolutions, so each quantized
        # convolution carries its own scale, not one shared with a BatchNorm after it.
        prepared = target.with_name("prepared.onnx")
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        try:
            quantize_static(
                prepared,
                target,
                calibration,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        finally:
            prepared.unlink(missing_ok=True)


def image_int8_static(
    source: Bundle, context: CompressContext, calibration_images: int = 256, check_images: int = 256
) -> Bundle:
    assert source.path is not None
    source_path = source.path
    if source.precision == "int8":
        raise FrugalError(f"bundle {source.id} is int8 already; quantize the fp32 bundle it came from")
    config = load_image_config(source)
    # Calibrate on one draw of training images; the agreement check runs on another.
    calibration = sample_pixels(context.image_data, calibration_images, config, context.seed + 1)
    check = sample_pixels(context.image_data, check_images, config, context.seed)
    reference = onnx_image_logits(source_path / ONNX_FILE, check)
    metrics: dict = {}

    def populate(folder: Path) -> None:
        quantize_image_file(source_path / ONNX_FILE, folder / ONNX_FILE, ImageCalibration(calibration))
        shutil.copy(source_path / CONFIG_FILE, folder / CONFIG_FILE)
        metrics.update(agreement(reference, onnx_image_logits(folder / ONNX_FILE, check)))

    return derived_bundle(
        source,
        "int8-static",
        populate,
        context.store,
        format="onnx",
        precision="int8",
        options={"calibration_images": len(calibration)},
        metrics=metrics,
    )
