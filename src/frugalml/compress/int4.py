"""4-bit weights in an ONNX bundle: 4-bit word embeddings, and 4-bit MatMuls (MatMulNBits).

Two techniques share this module:

- `emb4`: the word- and position-embedding matrices (after trimming still the largest tensors)
  stored in 4 bits, one fp32 scale per block of `block_size` values of a row; the rest of the
  encoder is dynamic int8, as the `int8` technique makes it. ONNX Runtime's fused embedding layer
  takes whole fp32 matrices, so it is taken apart: `GatherBlockQuantized` dequantizes only the
  rows a call reads (its tokens, its positions), then the sum and the layer norm as before. 0.625
  bytes per value on disk instead of int8's 1, at about int8's speed (docs/compression.md).
- `int4`: as `emb4`, and the encoder's matrix products (attention output and both FFN
  projections: two thirds of a BERT layer's weights) as `MatMulNBits` nodes: weights in 4 bits,
  one scale per block of input rows, symmetric; `accuracy_level=4` multiplies in int8. The fused
  attention's query, key and value weights stay int8 (the 4-bit quantizer reaches MatMul nodes
  only). Smaller again, but slower than int8 on the CPU measured (bench/results/compress_int4.json),
  so it stays out of the default search.

The classification head stays fp32 in both (compress/quantize.py says why).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from frugalml.bundle import Bundle
from frugalml.compress.context import CompressContext
from frugalml.compress.quantize import (
    FLOAT_DEFAULT,
    head_nodes,
    quantized_bundle,
    quiet_quantizer,
)
from frugalml.errors import FrugalError


def quantize_blocks(matrix: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric 4-bit blocks along each row: (codes 0..15 with zero point 8, packed two to a
    byte, low nibble first: [rows, cols / 2] uint8; scales: [rows, cols / block_size] float32)."""
    rows, cols = matrix.shape
    if cols % block_size or block_size % 2:
        raise FrugalError(f"block size {block_size} must be even and divide the row length {cols}")
    blocks = matrix.reshape(rows, cols // block_size, block_size)
    scales = np.maximum(np.abs(blocks).max(-1) / 7, 1e-12).astype(np.float32)
    codes = np.clip(np.round(blocks / scales[..., None]), -8, 7).astype(np.int16) + 8
    codes = codes.reshape(rows, cols).astype(np.uint8)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8), scales


def dequantize_blocks(packed: np.ndarray, scales: np.ndarray, block_size: int) -> np.ndarray:
    """The inverse of `quantize_blocks` (up to rounding)."""
    codes = np.empty((packed.shape[0], packed.shape[1] * 2), dtype=np.float32)
    codes[:, 0::2], codes[:, 1::2] = packed & 0x0F, packed >> 4
    blocks = (codes - 8).reshape(packed.shape[0], -1, block_size)
    return (blocks * scales[..., None]).reshape(codes.shape)


def embedding_node(model: onnx.ModelProto) -> onnx.NodeProto:
    nodes = [node for node in model.graph.node if node.op_type == "EmbedLayerNormalization"]
    if len(nodes) != 1:
        raise FrugalError("4-bit embeddings need the fused EmbedLayerNormalization of the `onnx` technique")
    return nodes[0]


def four_bit_table(model: onnx.ModelProto, name: str, block_size: int) -> tuple[str, str, int]:
    """Replace the constant matrix `name` by its 4-bit blocks, in place: (codes, scales, rows)."""
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    if name not in initializers:
        raise FrugalError(f"the embeddings {name!r} are not a constant of the graph")
    matrix = numpy_helper.to_array(initializers[name]).astype(np.float32)
    packed, scales = quantize_blocks(matrix, block_size)
    model.graph.initializer.remove(initializers[name])
    model.graph.initializer.extend(
        [numpy_helper.from_array(packed, f"{name}_4bit"), numpy_helper.from_array(scales, f"{name}_scales")]
    )
    return f"{name}_4bit", f"{name}_scales", len(matrix)


def four_bit_embeddings(model: onnx.ModelProto, block_size: int) -> None:
    """Replace the fused embedding layer by its parts, with the word and position tables in 4 bits,
    in place: words[ids] + positions[0..length) + segments[segment ids], layer norm; and the
    attention's mask index (the count of real tokens of each row) from the mask."""
    layer = embedding_node(model)
    ids, segment_ids, words, positions, segments, gamma, beta = layer.input[:7]
    mask = layer.input[7] if len(layer.input) > 7 else ""
    if not mask or (len(layer.input) > 8 and layer.input[8]):
        raise FrugalError("4-bit embeddings need an attention mask and no explicit position ids")
    epsilon = next((a.f for a in layer.attribute if a.name == "epsilon"), 1e-12)
    word_codes, word_scales, _ = four_bit_table(model, words, block_size)
    position_codes, position_scales, rows = four_bit_table(model, positions, block_size)
    parts = "all_positions zero one length position_ids words positions segments partial sum"
    names = {part: f"embeddings_4bit_{part}" for part in parts.split()}
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.arange(rows, dtype=np.int32), names["all_positions"]),
            numpy_helper.from_array(np.array([0], dtype=np.int64), names["zero"]),
            numpy_helper.from_array(np.array([1], dtype=np.int64), names["one"]),
        ]
    )

    def node(op: str, inputs: list[str], output: str, **attributes: Any) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [output], name=f"{output}_{op}", **attributes)

    def gather_4bit(codes: str, indices: str, scales: str, output: str) -> onnx.NodeProto:
        return node(
            "GatherBlockQuantized",
            [codes, indices, scales],
            output,
            domain="com.microsoft",
            gather_axis=0,
            quantize_axis=1,
            block_size=block_size,
        )

    nodes = [
        gather_4bit(word_codes, ids, word_scales, names["words"]),
        node("Shape", [ids], names["length"], start=1, end=2),
        node("Slice", [names["all_positions"], names["zero"], names["length"]], names["position_ids"]),
        gather_4bit(position_codes, names["position_ids"], position_scales, names["positions"]),
        node("Gather", [segments, segment_ids], names["segments"]),
        node("Add", [names["words"], names["positions"]], names["partial"]),
        node("Add", [names["partial"], names["segments"]], names["sum"]),
        node("LayerNormalization", [names["sum"], gamma, beta], layer.output[0], axis=-1, epsilon=epsilon),
    ]
    if len(layer.output) > 1 and layer.output[1]:  # the attention layers' mask index
        nodes.append(node("ReduceSum", [mask, names["one"]], layer.output[1], keepdims=0))
    at = list(model.graph.node).index(layer)
    model.graph.node.remove(layer)
    for offset, new in enumerate(nodes):
        model.graph.node.insert(at + offset, new)


def four_bit_matmuls(model: onnx.ModelProto, block_size: int, accuracy_level: int) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(
        block_size=block_size,
        is_symmetric=True,
        accuracy_level=accuracy_level,
        op_types_to_quantize=("MatMul",),
    )
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=head_nodes(model), algo_config=config)
    with quiet_quantizer():
        quantizer.process()
    return quantizer.model.model


def quantize_4bit_file(
    source: Path, target: Path, matmuls: bool, block_size: int = 32, accuracy_level: int = 4
) -> None:
    """int8 encoder with 4-bit embeddings; with `matmuls`, 4-bit MatMul weights too."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(source)
    if matmuls:
        model = four_bit_matmuls(model, block_size, accuracy_level)
    with tempfile.TemporaryDirectory() as scratch:
        step = Path(scratch) / "step.onnx"
        onnx.save(model, step)
        with quiet_quantizer():  # the rest, but the head and the embeddings: dynamic int8
            quantize_dynamic(
                step,
                step,
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=[*head_nodes(model), embedding_node(model).name],
                extra_options=FLOAT_DEFAULT,
            )
        model = onnx.load(step)
    four_bit_embeddings(model, block_size)
    onnx.save(model, target)


def emb4(source: Bundle, context: CompressContext, block_size: int = 32, check_texts: int = 256) -> Bundle:
    return quantized_bundle(
        source,
        context,
        "emb4",
        lambda src, dst: quantize_4bit_file(src, dst, False, block_size),
        {"block_size": block_size},
        check_texts,
        precision="int8+emb4",
    )


def int4(
    source: Bundle,
    context: CompressContext,
    block_size: int = 32,
    accuracy_level: int = 4,
    check_texts: int = 256,
) -> Bundle:
    return quantized_bundle(
        source,
        context,
        "int4",
        lambda src, dst: quantize_4bit_file(src, dst, True, block_size, accuracy_level),
        {"block_size": block_size, "accuracy_level": accuracy_level},
        check_texts,
        precision="int4",
    )
