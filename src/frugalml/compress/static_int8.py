"""Static int8 quantization: weights and activations, activation ranges calibrated on training text.

Static quantization fixes each activation's int8 range ahead of time from calibration batches,
so no per-call range scan is needed; whether that pays on a given CPU (and what it costs in
accuracy on a transformer, whose activations have outliers) is what the search measures.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from transformers import PreTrainedTokenizerBase

from frugalml.bundle import Bundle
from frugalml.compress.checks import MAX_LENGTH, sample_texts
from frugalml.compress.context import CompressContext
from frugalml.compress.quantize import FLOAT_DEFAULT, head_nodes, quantized_bundle, quiet_quantizer
from frugalml.models import load_bundle_tokenizer
from frugalml.models.batching import iterate_batches, tokenize


class TextCalibration(CalibrationDataReader):
    """Feeds length-grouped batches of tokenized texts to the calibrator."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], batch_size: int = 16):
        ids = tokenize(tokenizer, texts, MAX_LENGTH)
        self._feeds: Iterator[dict[str, np.ndarray]] = (
            {name: tensor.numpy() for name, tensor in batch.items()}
            for _, batch in iterate_batches(ids, batch_size, tokenizer.pad_token_id)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_static_file(source: Path, target: Path, calibration: CalibrationDataReader) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    # Types of the activations between ONNX Runtime's fused operators are unknown to ONNX's own
    # shape inference; without them the quantizer would quantize weights only.
    typed = SymbolicShapeInference.infer_shapes(onnx.load(source), auto_merge=True)
    with quiet_quantizer():
        quantize_static(
            typed,
            target,
            calibration,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # The encoder's matrix products (fused attention has no QDQ form); the head stays fp32.
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=head_nodes(typed),
            extra_options=FLOAT_DEFAULT,
        )


def int8_static(
    source: Bundle, context: CompressContext, calibration_texts: int = 256, check_texts: int = 256
) -> Bundle:
    assert source.path is not None
    tokenizer = load_bundle_tokenizer(source)
    # Calibrate on training text only; the agreement check then runs on a different draw.
    texts = sample_texts(context.text_data.texts, calibration_texts, context.seed + 1)
    return quantized_bundle(
        source,
        context,
        "int8-static",
        lambda src, dst: quantize_static_file(src, dst, TextCalibration(tokenizer, texts)),
        {"calibration_texts": len(texts)},
        check_texts,
    )
