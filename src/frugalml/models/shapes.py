"""Give a freshly built model the layer widths of a structurally pruned copy's weights.

Channel pruning (compress/image_prune.py) rebuilds layers smaller, so a pruned bundle's
`model.safetensors` no longer fits the architecture as its builder makes it. Its tensors say the
new widths: every convolution, batch norm and linear layer whose stored weight differs in shape
is given empty tensors of the stored shapes and the matching attributes, and then the weights load
as usual. A depthwise convolution (groups = channels) stays depthwise.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def fit_shapes(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Resize `model`'s layers in place to the shapes in `state`; returns `model`."""
    for prefix, module in model.named_modules():
        key = f"{prefix}.weight" if prefix else "weight"
        weight = getattr(module, "weight", None)
        if key not in state or not isinstance(weight, torch.Tensor) or state[key].shape == weight.shape:
            continue
        for name, tensor in list(module.named_parameters(recurse=False)):
            stored = state[f"{prefix}.{name}"]
            setattr(module, name, nn.Parameter(tensor.new_empty(stored.shape), tensor.requires_grad))
        for name, buffer in list(module.named_buffers(recurse=False)):
            stored_key = f"{prefix}.{name}"
            if buffer is not None and stored_key in state and buffer.ndim:
                module.register_buffer(name, buffer.new_empty(state[stored_key].shape))
        _fix_attributes(module)
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear) and hasattr(model, "width"):
        setattr(model, "width", head.in_features)  # noqa: B010 (nn.Module types its attributes as tensors)
    return model


def _fix_attributes(module: nn.Module) -> None:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    shape = tuple(weight.shape)
    if isinstance(module, nn.Conv2d):
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        module.out_channels = shape[0]
        module.groups = shape[0] if depthwise else module.groups
        module.in_channels = shape[1] * module.groups
    elif isinstance(module, nn.BatchNorm2d):
        module.num_features = shape[0]
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = shape[0], shape[1]
