"""Dynamic int8 quantization of an ONNX bundle: int8 weights, activations quantized on the fly.

The encoder is quantized (fused attention, matrix products, embeddings); weights per output
channel, which keeps the logits closer to fp32 than one scale per tensor. The classification head
stays fp32: it reads L2-normalized sentence vectors through weights scaled by 1/std (the
standardized logistic-regression warm start), so int8 activations there cost whole points of
accuracy for a saving of about 100 KB (with it fp32, int8 matches the teacher's BANKING77 test
accuracy: bench/results/compress.json). The new bundle's metrics say how often it agrees with
its fp32 source on the domain's text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx

from frugalml.bundle import Bundle
from frugalml.compress.checks import agreement, onnx_logits, sample_texts
from frugalml.compress.context import CompressContext, derived_bundle
from frugalml.compress.onnx_export import ONNX_FILE, copy_companions
from frugalml.errors import FrugalError
from frugalml.models import load_bundle_tokenizer

# The quantizer cannot infer types through ONNX Runtime's fused (com.microsoft) operators.
FLOAT_DEFAULT = {"DefaultTensorType": onnx.TensorProto.FLOAT}


@contextmanager
def quiet_quantizer() -> Iterator[None]:
    """The quantizer logs advice on the root logger (pre-processing hints); keep it off the terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the classification head's nodes (those reading the classifier's weights).

    Both spellings: the dynamic quantizer first rewrites a Gemm into a MatMul named `NAME_MatMul`.
    """
    weights = {tensor.name for tensor in model.graph.initializer if "classifier" in tensor.name}
    names = [node.name for node in model.graph.node if weights & set(node.input)]
    return names + [f"{name}_MatMul" for name in names]


def quantize_file(source: Path, target: Path, per_channel: bool = True) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_quantizer():
        quantize_dynamic(
            source,
            target,
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=head_nodes(onnx.load(source)),
            extra_options=FLOAT_DEFAULT,
        )


def quantized_bundle(
    source: Bundle,
    context: CompressContext,
    technique_name: str,
    quantize: Callable[[Path, Path], None],
    options: dict,
    check_texts: int,
    precision: str = "int8",
) -> Bundle:
    """Write `quantize(source_file, target_file)`'s output as a `precision` bundle, with its agreement."""
    assert source.path is not None
    source_path = source.path
    if source.precision != "fp32":
        raise FrugalError(
            f"bundle {source.id} is {source.precision} already; quantize the fp32 bundle it came from"
        )
    tokenizer = load_bundle_tokenizer(source)
    sample = sample_texts(context.corpus, check_texts, context.seed)
    reference = onnx_logits(source.path / ONNX_FILE, tokenizer, sample)
    metrics: dict = {}

    def populate(folder: Path) -> None:
        quantize(source_path / ONNX_FILE, folder / ONNX_FILE)
        copy_companions(source_path, folder)
        metrics.update(agreement(reference, onnx_logits(folder / ONNX_FILE, tokenizer, sample)))

    return derived_bundle(
        source,
        technique_name,
        populate,
        context.store,
        format="onnx",
        precision=precision,
        options=options,
        metrics=metrics,
    )


def int8_dynamic(
    source: Bundle, context: CompressContext, per_channel: bool = True, check_texts: int = 256
) -> Bundle:
    return quantized_bundle(
        source,
        context,
        "int8",
        lambda src, dst: quantize_file(src, dst, per_channel),
        {"per_channel": per_channel},
        check_texts,
    )
