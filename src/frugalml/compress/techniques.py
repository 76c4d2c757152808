"""The registry of compression techniques: one module per technique, one entry point.

A technique reads one bundle and writes a new one whose parent is the source, so techniques
chain (`prune` -> `trim` -> `distill` -> `onnx` -> `int8`) and the registry records every arrow.
Each technique module registers itself with `@technique(...)`; `apply_technique` is the one way
to run any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from frugalml.bundle import Bundle, new_bundle_id, write_bundle
from frugalml.data import Dataset
from frugalml.errors import FrugalError
from frugalml.models import FrugalTextClassifier, FrugalTextClassifierConfig
from frugalml.progress import Reporter, SilentReporter


@dataclass
class CompressContext:
    """What techniques may use besides the source bundle."""

    store: Path  # where new bundles are written
    train: Dataset  # labelled training text: corpus, calibration and distillation data
    teacher: Bundle  # the bundle compression started from
    unlabelled: list[str] = field(default_factory=list)
    seed: int = 0
    reporter: Reporter = field(default_factory=SilentReporter)

    @property
    def corpus(self) -> list[str]:
        """The domain text: training texts, then unlabelled texts."""
        return list(self.train.texts) + list(self.unlabelled)


TechniqueFunction = Callable[..., Bundle]  # (source, context, **options) -> new bundle


@dataclass(frozen=True)
class Technique:
    name: str
    description: str
    source_format: str  # the bundle format the technique reads: "torch" or "onnx"
    apply: TechniqueFunction


TECHNIQUES: dict[str, Technique] = {}


def technique(
    name: str, description: str, source_format: str
) -> Callable[[TechniqueFunction], TechniqueFunction]:
    """Register a technique under `name`."""

    def register(function: TechniqueFunction) -> TechniqueFunction:
        TECHNIQUES[name] = Technique(name, description, source_format, function)
        return function

    return register


def _import_builtin() -> None:
    from frugalml.compress import (  # noqa: F401  (they register)
        distill,
        onnx_export,
        prune,
        quantize,
        static_int8,
        vocab_trim,
    )


def available_techniques() -> dict[str, Technique]:
    _import_builtin()
    return TECHNIQUES


def get_technique(name: str) -> Technique:
    techniques = available_techniques()
    if name not in techniques:
        raise FrugalError(f"unknown technique {name!r}; choose from {', '.join(techniques)}")
    return techniques[name]


def apply_technique(name: str, source: Bundle, context: CompressContext, **options: Any) -> Bundle:
    """Run technique `name` on `source`; returns the new bundle (already written to the store)."""
    chosen = get_technique(name)
    if source.format != chosen.source_format:
        raise FrugalError(
            f"technique {name!r} reads {chosen.source_format} bundles; bundle {source.id} is {source.format}"
        )
    return chosen.apply(source, context, **options)


def derived_bundle(
    source: Bundle,
    technique_name: str,
    populate: Callable[[Path], None],
    store: Path,
    *,
    format: str,
    precision: str,
    options: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    name: str | None = None,
) -> Bundle:
    """Write the bundle a technique made from `source`: same labels and base, `source` as parent.

    `populate(folder)` writes the files and may fill in `metrics` (they go into the manifest).
    """
    chain = [*source.config.get("techniques", []), technique_name]
    bundle = Bundle(
        id=new_bundle_id(),
        name=name or f"{source.name}-{technique_name}",
        labels=source.labels,
        base_model=source.base_model,
        method=source.method,
        format=format,
        precision=precision,
        metrics=metrics if metrics is not None else {},
        parents=[source.id],
        config={
            "technique": technique_name,
            "options": options or {},
            "source": source.id,
            "techniques": chain,
        },
    )
    return write_bundle(store, bundle, populate)


def load_torch(bundle: Bundle) -> tuple[FrugalTextClassifier, PreTrainedTokenizerBase]:
    """The classifier and tokenizer of a PyTorch bundle, in eval mode."""
    assert bundle.path is not None
    config = FrugalTextClassifierConfig.from_pretrained(bundle.path)
    model = FrugalTextClassifier.from_pretrained(bundle.path, config=config).eval()
    return model, AutoTokenizer.from_pretrained(bundle.path)


def save_torch(model: FrugalTextClassifier, tokenizer: PreTrainedTokenizerBase) -> Callable[[Path], None]:
    """A `populate` function that writes a PyTorch bundle (a Hugging Face model folder)."""

    def populate(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return populate
