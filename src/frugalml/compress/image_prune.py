"""Structured channel pruning of an image model, with Torch-Pruning.

Torch-Pruning traces the model once to find which layers' channels depend on each other (a
convolution's outputs, the batch norm after it, the next layer's inputs, residual additions), then
removes whole channels from each such group, lowest L2 weight magnitude first, rebuilding the
layers smaller: the pruned model is a plain dense model with fewer channels, which PyTorch, ONNX
Runtime and int8 kernels all run faster. The classification head's outputs are kept. Pruning alone
costs accuracy; `distill` after it fine-tunes the pruned model on the teacher's soft labels.
"""

from __future__ import annotations

from pathlib import Path

import torch

from frugalml.bundle import Bundle
from frugalml.compress.checks import agreement
from frugalml.compress.context import CompressContext, derived_bundle
from frugalml.compress.image_checks import sample_pixels, torch_image_logits
from frugalml.errors import FrugalError
from frugalml.models.vision import ImageClassifier, ImageModelConfig, load_image_model, save_image_model


def prune_channels(model: ImageClassifier, config: ImageModelConfig, channels: float) -> ImageClassifier:
    """Keep the fraction `channels` of every prunable layer's channels (in place); returns `model`."""
    try:
        import torch_pruning as tp
    except ImportError:
        raise FrugalError("channel pruning needs Torch-Pruning: pip install 'frugalml[vision]'") from None
    if not 0 < channels < 1:
        raise FrugalError(f"channels is the fraction of channels to keep, in (0, 1); got {channels}")
    example = torch.zeros((1, config.channels, config.image_size, config.image_size))
    pruner = tp.pruner.MetaPruner(
        model.eval(),
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=1 - channels,
        ignored_layers=[model.head],
        round_to=4,  # channel counts that vector kernels handle without remainders
    )
    pruner.step()
    model.width = model.head.in_features
    return model


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def image_prune(
    source: Bundle, context: CompressContext, channels: float = 0.5, check_images: int = 256
) -> Bundle:
    model, config = load_image_model(source)
    before = parameters(model)
    pixels = sample_pixels(context.image_data, check_images, config, context.seed)
    reference = torch_image_logits(model, pixels)
    prune_channels(model, config, channels)
    metrics = {
        "parameters_before": before,
        "parameters": parameters(model),
        "embedding_width": model.width,
        # Before distillation: how much of the teacher's behaviour pruning alone kept.
        **agreement(reference, torch_image_logits(model, pixels)),
    }

    def populate(folder: Path) -> None:
        save_image_model(folder, model, config)

    return derived_bundle(
        source,
        "prune",
        populate,
        context.store,
        format="torch",
        precision=source.precision,
        options={"channels": channels},
        metrics=metrics,
    )
