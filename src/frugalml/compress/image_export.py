"""Export a PyTorch image bundle to an ONNX image bundle (runtime/image_onnx_predictor.py's contract).

The graph takes float32 `pixel_values` [batch, channels, size, size] with a dynamic batch axis
and returns `logits`; batch normalisation folds into the convolutions when ONNX Runtime optimises
the graph at load. `image_config.json` is carried beside it. The export must give the PyTorch
model's logits on the domain's images (within MAX_ABS_DIFF) or nothing is written.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch

from frugalml.bundle import Bundle
from frugalml.compress.checks import agreement
from frugalml.compress.context import CompressContext, derived_bundle
from frugalml.compress.image_checks import onnx_image_logits, sample_pixels, torch_image_logits
from frugalml.errors import FrugalError
from frugalml.models.vision import CONFIG_FILE, ImageModelConfig, load_image_model
from frugalml.runtime.image_onnx_predictor import INPUT, ONNX_FILE

MAX_ABS_DIFF = 1e-3  # fp32 export: fused kernels reorder sums, nothing more


def export_image_model(model: torch.nn.Module, config: ImageModelConfig, path: Path, opset: int = 17) -> None:
    """Write `model` (eval mode) as an ONNX graph at `path`."""
    example = torch.zeros((2, config.channels, config.image_size, config.image_size))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on the TorchScript path
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=["logits"],
            dynamic_axes={INPUT: {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )


def image_onnx_technique(source: Bundle, context: CompressContext, check_images: int = 256) -> Bundle:
    assert source.path is not None
    source_path = source.path
    model, config = load_image_model(source)
    pixels = sample_pixels(context.image_data, check_images, config, context.seed)
    reference = torch_image_logits(model, pixels)
    metrics: dict = {}

    def populate(folder: Path) -> None:
        export_image_model(model, config, folder / ONNX_FILE)
        shutil.copy(source_path / CONFIG_FILE, folder / CONFIG_FILE)
        metrics.update(agreement(reference, onnx_image_logits(folder / ONNX_FILE, pixels)))
        if metrics["max_abs_diff"] > MAX_ABS_DIFF:
            raise FrugalError(f"the exported ONNX graph does not match the PyTorch model ({metrics})")

    return derived_bundle(
        source, "onnx", populate, context.store, format="onnx", precision=source.precision, metrics=metrics
    )
