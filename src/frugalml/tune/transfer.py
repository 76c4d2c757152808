"""`tune --from BUNDLE`: start from an earlier bundle instead of the base encoder.

The parent's encoder (with its LoRA or IA3 update merged in, as its bundle holds it) and the
weights its method added (soft prompt, prefixes, bottleneck adapters) carry over; the new run's
method trains on top of them. The parent's head rows start the labels both share; a label the
parent lacks starts at zero. The recipe then fits the head by logistic regression on the carried
encoder's features, from those rows (tune/heads.py): a convex problem, so the rows are where the
solver starts, and the head that ships is the optimum on the new data.
"""

from __future__ import annotations

import numpy as np
import torch

from frugalml.bundle import Bundle
from frugalml.errors import FrugalError
from frugalml.lineage import LineageStore, resolve_bundle
from frugalml.models import FrugalTextClassifier
from frugalml.models.base import portable_base_name
from frugalml.models.loading import load_bundle_model

STRUCTURES = ("prompt_length", "prefix_length", "bottleneck_adapter")  # config keys of added weights


def parent_bundle(ref: str, store: LineageStore, base: str) -> Bundle:
    """The registered PyTorch bundle `ref` names (id, id prefix or folder), tuned from `base`."""
    bundle = resolve_bundle(ref, store)
    store.find_bundle(bundle.id)  # registered: the lineage store records it as the parent
    if bundle.format != "torch":
        raise FrugalError(
            f"--from {ref}: bundle {bundle.id} is a {bundle.format} bundle; continue from a PyTorch "
            f"bundle (its parent: {', '.join(bundle.parents) or 'none recorded'})"
        )
    if bundle.base_model != portable_base_name(base):
        raise FrugalError(
            f"--from {ref}: bundle {bundle.id} was tuned from base {bundle.base_model!r}, not "
            f"{portable_base_name(base)!r}; give --base {bundle.base_model}"
        )
    return bundle


def carry_over(
    model: FrugalTextClassifier, bundle: Bundle, labels: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Give `model` (a new classifier for `labels` on the same base) the parent's encoder and added weights;
    return the warm-start head: the parent's rows for shared labels, zeros for new ones."""
    parent = load_bundle_model(bundle)
    for key in STRUCTURES:
        setattr(model.config, key, getattr(parent.config, key))
    model.extend()
    state = {k: v for k, v in parent.state_dict().items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise FrugalError(
            f"bundle {bundle.id}'s weights do not fit a new classifier on its base "
            f"({', '.join((missing + unexpected)[:3])})"
        )
    rows = {label: i for i, label in enumerate(bundle.labels)}  # the parent's head rows, in order
    weight = np.zeros((len(labels), model.classifier.in_features), dtype=np.float32)
    bias = np.zeros(len(labels), dtype=np.float32)
    with torch.no_grad():
        for i, label in enumerate(labels):
            if label in rows and parent.classifier.bias[rows[label]] > -1e3:  # not a never-predicted row
                weight[i] = parent.classifier.weight[rows[label]].numpy()
                bias[i] = parent.classifier.bias[rows[label]].numpy()
    return weight, bias
