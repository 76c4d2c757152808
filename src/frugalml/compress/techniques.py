"""The compression techniques: one literal table, one entry point.

Each technique is a function `(source, context, **options) -> Bundle` in its own module; to add
one, write the module and add its row here (docs/architecture.md has the checklist).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from frugalml.bundle import Bundle
from frugalml.compress.context import CompressContext
from frugalml.compress.distill import distill
from frugalml.compress.int4 import emb4, int4
from frugalml.compress.onnx_export import onnx_technique
from frugalml.compress.prune import prune
from frugalml.compress.quantize import int8_dynamic
from frugalml.compress.static_int8 import int8_static
from frugalml.compress.vocab_trim import trim_vocabulary
from frugalml.errors import FrugalError


@dataclass(frozen=True)
class Technique:
    description: str
    source_format: str  # the bundle format the technique reads: "torch" or "onnx"
    apply: Callable[..., Bundle]  # (source, context, **options) -> the new bundle, written
    # In the default search. emb4 and int4 are smaller than int8 but ran slower on the CPUs measured
    # (docs/compression.md), and the search selects the smallest candidate within the accuracy
    # budget, however slow.
    default: bool = True


TECHNIQUES: dict[str, Technique] = {
    "onnx": Technique(
        "ONNX export with dynamic axes, fused by ONNX Runtime's transformer optimizer",
        "torch",
        onnx_technique,
    ),
    "int8": Technique(
        "dynamic int8: per-channel int8 weights, activations quantized at run time", "onnx", int8_dynamic
    ),
    "int8-static": Technique(
        "static int8: activation ranges calibrated on training text", "onnx", int8_static
    ),
    "emb4": Technique(
        "dynamic int8 with 4-bit word embeddings (GatherBlockQuantized)", "onnx", emb4, default=False
    ),
    "int4": Technique(
        "4-bit MatMul weights (MatMulNBits) and word embeddings, int8 attention", "onnx", int4, default=False
    ),
    "trim": Technique(
        "vocabulary trimming: keep the tokens the domain corpus uses", "torch", trim_vocabulary
    ),
    "prune": Technique(
        "depth and width pruning: keep k of n layers, drop weak heads and FFN neurons", "torch", prune
    ),
    "distill": Technique("distillation: train the student on the teacher's soft labels", "torch", distill),
}


DEFAULT_TECHNIQUES = tuple(name for name, technique in TECHNIQUES.items() if technique.default)


def get_technique(name: str) -> Technique:
    if name not in TECHNIQUES:
        raise FrugalError(f"unknown technique {name!r}; choose from {', '.join(TECHNIQUES)}")
    return TECHNIQUES[name]


def apply_technique(name: str, source: Bundle, context: CompressContext, **options: Any) -> Bundle:
    """Run technique `name` on `source`; returns the new bundle (already written to the store)."""
    chosen = get_technique(name)
    if source.format != chosen.source_format:
        raise FrugalError(
            f"technique {name!r} reads {chosen.source_format} bundles; bundle {source.id} is {source.format}"
        )
    return chosen.apply(source, context, **options)
