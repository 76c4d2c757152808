"""The `adapter`, `prompt` and `prefix` methods: weights added to the classifier, not through PEFT.

None can be folded into the encoder's weights (a bottleneck adapter is non-linear, a soft prompt
lengthens the input, a prefix the keys and values), so the bundle's model carries them: the
classifier's config names them (`bottleneck_adapter`, `prompt_length`, `prefix_length`) and
models/hf_model.py rebuilds them on load, in frugalml and in plain transformers alike. Only they
and the classifier head train.
"""

from __future__ import annotations

import torch
from torch import nn

from frugalml.errors import FrugalError
from frugalml.models import FrugalTextClassifier

PLACEMENTS = ("pfeiffer", "houlsby")  # after the FFN only; after the FFN and the attention block


def prepare_adapter(model: nn.Module, options: dict) -> nn.Module:
    classifier = _classifier(model)
    reduction, placement = options["adapter_reduction"], options["adapter_placement"]
    hidden = classifier.encoder.config.hidden_size
    if reduction > hidden:
        raise FrugalError(
            f"adapter reduction factor {reduction} leaves no bottleneck for hidden size {hidden}; "
            f"use 1-{hidden}"
        )
    classifier.config.bottleneck_adapter = {"reduction": reduction, "placement": placement}
    if classifier.extend() == 0:
        classifier.config.bottleneck_adapter = None
        raise FrugalError(
            f"method adapter: base model type {classifier.encoder.config.model_type!r} has no "
            "BERT-style layer outputs to put adapters after; use lora, ia3 or full"
        )
    _train_only(classifier, lambda name: ".adapter." in name)
    return classifier


def prepare_prompt(model: nn.Module, options: dict) -> nn.Module:
    classifier = _classifier(model)
    length = options["prompt_length"]
    positions = classifier.encoder.config.max_position_embeddings
    if length > positions - 8:
        raise FrugalError(
            f"prompt length {length} leaves too few of the encoder's {positions} positions for the "
            f"text; use 1-{positions - 8}"
        )
    classifier.config.prompt_length = length
    classifier.extend()
    assert classifier.prompt is not None
    with torch.no_grad():  # start from the embeddings of random vocabulary tokens (Lester et al. 2021)
        table = classifier.encoder.get_input_embeddings().weight
        ids = torch.randint(table.shape[0], (length,), device=table.device)
        classifier.prompt.copy_(table[ids])
    _train_only(classifier, lambda name: name == "prompt")
    return classifier


def prepare_prefix(model: nn.Module, options: dict) -> nn.Module:
    classifier = _classifier(model)
    classifier.config.prefix_length = options["prefix_length"]
    if classifier.extend() == 0:
        classifier.config.prefix_length = 0
        raise FrugalError(
            f"method prefix: base model type {classifier.encoder.config.model_type!r} has no "
            "BERT-style self-attention layers to give prefixes; use lora, ia3 or full"
        )
    _train_only(classifier, lambda name: ".prefix." in name)
    return classifier


def reserved_positions(options: dict) -> int:
    """Encoder positions the method takes before each text's tokens."""
    return options["prompt_length"] if options["method"] == "prompt" else 0


def _classifier(model: nn.Module) -> FrugalTextClassifier:
    assert isinstance(model, FrugalTextClassifier)
    return model


def _train_only(model: nn.Module, trains) -> None:
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("classifier.") or trains(name)
