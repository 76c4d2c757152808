"""The compression techniques: one literal table, one entry point.

Each technique is a function `(source, context, **options) -> Bundle` per bundle task (text,
image) in its own module; to add one, write the module and add its row here (docs/architecture.md
has the checklist). The search (compress/search.py) is one for every task: it plans only the
techniques whose row has the bundle's task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from frugalml.bundle import IMAGE_TASK, TEXT_TASK, Bundle
from frugalml.compress.context import CompressContext
from frugalml.compress.distill import distill
from frugalml.compress.image_distill import image_distill
from frugalml.compress.image_export import image_onnx_technique
from frugalml.compress.image_int8 import image_int8_static
from frugalml.compress.image_prune import image_prune
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
    # bundle task -> (source, context, **options) -> the new bundle, written; a task missing here
    # is one the technique does not apply to.
    apply: dict[str, Callable[..., Bundle]]
    # In the default search. int4 is out: the search selects the smallest candidate within the
    # accuracy budget, however slow, and int4 measured slower than int8 (docs/compression.md).
    default: bool = True


TECHNIQUES: dict[str, Technique] = {
    "onnx": Technique(
        "ONNX export with dynamic batch axes (text: fused by ONNX Runtime's transformer optimizer)",
        "torch",
        {TEXT_TASK: onnx_technique, IMAGE_TASK: image_onnx_technique},
    ),
    "int8": Technique(
        "dynamic int8: per-channel int8 weights, activations quantized at run time (text)",
        "onnx",
        {TEXT_TASK: int8_dynamic},
    ),
    "int8-static": Technique(
        "static int8 (QDQ, per-channel weights): activation ranges calibrated on training text or images",
        "onnx",
        {TEXT_TASK: int8_static, IMAGE_TASK: image_int8_static},
    ),
    "emb4": Technique(
        "dynamic int8 with 4-bit word and position embeddings (GatherBlockQuantized) (text)",
        "onnx",
        {TEXT_TASK: emb4},
    ),
    "int4": Technique(
        "4-bit MatMul weights (MatMulNBits) and word embeddings, int8 attention (text)",
        "onnx",
        {TEXT_TASK: int4},
        default=False,
    ),
    "trim": Technique(
        "vocabulary trimming: keep the tokens the domain corpus uses (text)",
        "torch",
        {TEXT_TASK: trim_vocabulary},
    ),
    "prune": Technique(
        "pruning: text keeps k of n layers and drops weak heads and FFN neurons; images lose whole "
        "channels (Torch-Pruning)",
        "torch",
        {TEXT_TASK: prune, IMAGE_TASK: image_prune},
    ),
    "distill": Technique(
        "distillation: train the student (pruned, or a new small CNN for an image teacher) on the "
        "teacher's soft labels",
        "torch",
        {TEXT_TASK: distill, IMAGE_TASK: image_distill},
    ),
}


DEFAULT_TECHNIQUES = tuple(name for name, technique in TECHNIQUES.items() if technique.default)


def get_technique(name: str) -> Technique:
    if name not in TECHNIQUES:
        raise FrugalError(f"unknown technique {name!r}; choose from {', '.join(TECHNIQUES)}")
    return TECHNIQUES[name]


def techniques_for(task: str) -> list[str]:
    """The techniques that apply to bundles of `task`, in table order."""
    return [name for name, technique in TECHNIQUES.items() if task in technique.apply]


def apply_technique(name: str, source: Bundle, context: CompressContext, **options: Any) -> Bundle:
    """Run technique `name` on `source`; returns the new bundle (already written to the store)."""
    chosen = get_technique(name)
    if source.task not in chosen.apply:
        raise FrugalError(f"technique {name!r} does not apply to {source.task} bundles")
    if source.format != chosen.source_format:
        raise FrugalError(
            f"technique {name!r} reads {chosen.source_format} bundles; bundle {source.id} is {source.format}"
        )
    return chosen.apply[source.task](source, context, **options)
