"""What every compression technique gets, and how it writes the bundle it makes.

A technique reads one bundle and writes a new one whose parent is the source, so techniques
chain (`prune` -> `trim` -> `distill` -> `onnx` -> `int8`) and the lineage store records every
arrow. The techniques are the rows of `TECHNIQUES` (compress/techniques.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from frugalml.bundle import Bundle, new_bundle_id, write_bundle
from frugalml.data import Dataset
from frugalml.data.images import ImageDataset
from frugalml.errors import FrugalError
from frugalml.models import FrugalTextClassifier, load_bundle_torch
from frugalml.monitor.reference import copy_reference
from frugalml.progress import Reporter, SilentReporter


@dataclass
class CompressContext:
    """What techniques may use besides the source bundle."""

    store: Path  # where new bundles are written
    # Labelled training data of the bundle's task (texts or images): corpus, calibration images,
    # distillation data.
    train: Dataset | ImageDataset
    teacher: Bundle  # the bundle compression started from
    unlabelled: list[str] = field(default_factory=list)  # in-domain texts (text bundles)
    seed: int = 0
    reporter: Reporter = field(default_factory=SilentReporter)
    device: str = "cpu"  # where a technique that trains computes (frugalml.devices)
    # Distillation's teacher outputs by (texts digest, with layer states, with projections): computed
    # once per search.
    teacher_outputs: dict[tuple[str, bool, bool], Any] = field(default_factory=dict, repr=False)

    @property
    def text_data(self) -> Dataset:
        """The training texts (a text bundle's techniques read them)."""
        if not isinstance(self.train, Dataset):
            raise FrugalError(
                f"bundle {self.teacher.id} classifies {self.teacher.task}; this technique needs texts"
            )
        return self.train

    @property
    def image_data(self) -> ImageDataset:
        """The training images (an image bundle's techniques read them)."""
        if not isinstance(self.train, ImageDataset):
            raise FrugalError(
                f"bundle {self.teacher.id} classifies {self.teacher.task}; this technique needs images"
            )
        return self.train

    @property
    def corpus(self) -> list[str]:
        """The domain text: training texts, then unlabelled texts."""
        return list(self.text_data.texts) + list(self.unlabelled)


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
    The source's drift reference (monitor/reference.py) is carried over unchanged.
    """

    def populate_with_reference(folder: Path) -> None:
        populate(folder)
        copy_reference(source, folder)

    chain = [*source.config.get("techniques", []), technique_name]
    bundle = Bundle(
        id=new_bundle_id(),
        name=name or f"{source.name}-{technique_name}",
        labels=source.labels,
        base_model=source.base_model,
        method=source.method,
        task=source.task,
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
    return write_bundle(store, bundle, populate_with_reference)


def load_torch(bundle: Bundle) -> tuple[FrugalTextClassifier, PreTrainedTokenizerBase]:
    """The classifier and tokenizer of a PyTorch bundle, in eval mode."""
    return load_bundle_torch(bundle)


def save_torch(model: FrugalTextClassifier, tokenizer: PreTrainedTokenizerBase) -> Callable[[Path], None]:
    """A `populate` function that writes a PyTorch bundle (a Hugging Face model folder)."""

    def populate(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return populate
