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
from torch.nn.utils import parametrize

from frugalml.errors import FrugalError
from frugalml.models import FrugalTextClassifier
from frugalml.models.hf_model import Prefix

PLACEMENTS = ("pfeiffer", "houlsby")  # after the FFN only; after the FFN and the attention block


def prepare_adapter(model: nn.Module, options: dict) -> nn.Module:
    classifier = _classifier(model)
    reduction, placement = options["adapter_reduction"], options["adapter_placement"]
    if _carried(classifier, "bottleneck_adapter", {"reduction": reduction, "placement": placement}):
        _train_only(classifier, lambda name: ".adapter." in name)
        return classifier
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
    if _carried(classifier, "prompt_length", length):
        _train_only(classifier, lambda name: name == "prompt")
        return classifier
    classifier.config.prompt_length = length
    classifier.config.prompt_shifts_text = False
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
    if _carried(classifier, "prefix_length", options["prefix_length"]):
        _train_only(classifier, lambda name: ".prefix." in name)
        return classifier
    classifier.config.prefix_length = options["prefix_length"]
    if classifier.extend() == 0:
        classifier.config.prefix_length = 0
        raise FrugalError(
            f"method prefix: base model type {classifier.encoder.config.model_type!r} has no "
            "BERT-style self-attention layers to give prefixes; use lora, ia3 or full"
        )
    if options["prefix_mlp"]:
        _reparameterise_prefixes(classifier, options["prefix_mlp"])
    _train_only(classifier, lambda name: ".prefix." in name)
    return classifier


class PrefixMLP(nn.Module):
    """P-Tuning v2's optional reparameterisation (Li & Liang 2021): a prefix trained as
    MLP(prefix), width -> hidden -> width with tanh, which trains more stably than the raw
    vectors. Used through torch's parametrize, so the layer still reads `prefix.key`."""

    def __init__(self, width: int, hidden: int, device: torch.device):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(width, hidden, device=device), nn.Tanh(), nn.Linear(hidden, width, device=device)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)  # starts near the raw prefix


def _reparameterise_prefixes(classifier: FrugalTextClassifier, hidden: int) -> None:
    for module in classifier.modules():
        if isinstance(module, Prefix):
            for name in ("key", "value"):
                width, device = getattr(module, name).shape[1], getattr(module, name).device
                parametrize.register_parametrization(module, name, PrefixMLP(width, hidden, device))


def merge_reparameterisation(model: nn.Module) -> None:
    """Replace every reparameterised prefix by the plain vectors it computes (before saving): the
    bundle keeps only the keys and values, and the MLP is gone."""
    for module in model.modules():
        if isinstance(module, Prefix) and parametrize.is_parametrized(module):
            for name in ("key", "value"):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def _carried(classifier: FrugalTextClassifier, key: str, wanted: object) -> bool:
    """Whether the model already has this method's weights (from `tune --from`), as `wanted`."""
    have = getattr(classifier.config, key)
    if not have:
        return False
    if have != wanted:
        raise FrugalError(
            f"the bundle this run continues from has {key.replace('_', ' ')} {have}; "
            f"tune with the same ({wanted} asked)"
        )
    return True


def _classifier(model: nn.Module) -> FrugalTextClassifier:
    assert isinstance(model, FrugalTextClassifier)
    return model


def _train_only(model: nn.Module, trains) -> None:
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("classifier.") or trains(name)
