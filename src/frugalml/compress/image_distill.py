"""Distillation for image models: train a student on the teacher's soft labels and the true labels.

The student is the source bundle's model when it is not the teacher (a channel-pruned copy: this
is its fine-tuning), or else a new small CNN (`cnn`) of the teacher's input size, trained from
scratch: distillation of a ResNet-18 or MobileNetV3 teacher into a smaller CNN. The teacher is the
bundle compression started from, in whatever format; it labels every training image once. The
loss is compress/distill.py's: temperature-scaled KL divergence to the teacher plus cross-entropy
on the true label, weighted by class as the teacher's training was. Each batch is augmented with
random shifts of up to `shift` pixels.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from frugalml.bundle import Bundle
from frugalml.compress.context import CompressContext, derived_bundle
from frugalml.compress.distill import distillation_loss, teacher_class_weight
from frugalml.compress.image_checks import sample_pixels, sample_rows, torch_image_logits
from frugalml.devices import resolve_device
from frugalml.models.vision import (
    ImageModelConfig,
    build_image_model,
    load_image_config,
    load_image_model,
    preprocess,
    save_image_model,
)
from frugalml.runtime import load_predictor

STUDENT = "cnn"  # what a teacher is distilled into when the source is the teacher itself


def shifted(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to `shift` pixels each way (edges repeated), a new random move per image."""
    if shift <= 0:
        return x
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    size_h, size_w = x.shape[2], x.shape[3]
    offsets = torch.randint(0, 2 * shift + 1, (len(x), 2), generator=generator)
    return torch.stack(
        [padded[i, :, dy : dy + size_h, dx : dx + size_w] for i, (dy, dx) in enumerate(offsets.tolist())]
    )


def image_distill(
    source: Bundle,
    context: CompressContext,
    epochs: int = 3,
    lr: float = 1e-3,
    batch_size: int = 64,
    temperature: float = 2.0,
    alpha: float = 0.5,
    shift: int = 2,
) -> Bundle:
    started = time.perf_counter()
    device = resolve_device(context.device)
    torch.manual_seed(context.seed)
    generator = torch.Generator().manual_seed(context.seed)
    from_scratch = source.id == context.teacher.id
    if from_scratch:  # a new small CNN: the teacher's weights are not needed here
        teacher = load_image_config(source)
        config = ImageModelConfig(
            STUDENT, teacher.num_classes, teacher.channels, teacher.image_size, teacher.mean, teacher.std
        )
        model = build_image_model(STUDENT, config.num_classes, config.channels, config.image_size)
    else:
        model, config = load_image_model(source)
    data = context.image_data
    index = {label: i for i, label in enumerate(source.labels)}
    labels = torch.as_tensor([index[y] for y in data.require_labels()])
    class_weight = teacher_class_weight(context, data.require_labels(), source.labels)
    class_weight = None if class_weight is None else class_weight.to(device)
    with context.reporter.task("teacher labels", None):
        probabilities = load_predictor(context.teacher, device=context.device).predict_proba(
            list(data.images)
        )
    targets = torch.from_numpy(np.log(np.maximum(probabilities, 1e-30)).astype(np.float32))
    pixels = torch.from_numpy(preprocess(data.images, config.mean, config.std))

    model.train().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = math.ceil(len(data) / batch_size) * epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1))
    losses: list[float] = []
    with context.reporter.task(
        f"distilling into {STUDENT if from_scratch else source.name}", steps
    ) as progress:
        for _ in range(epochs):
            order = torch.randperm(len(data), generator=generator)
            for start in range(0, len(data), batch_size):
                rows = order[start : start + batch_size]
                x = shifted(pixels[rows], shift, generator).to(device)
                loss = distillation_loss(
                    model(x).float(),
                    targets[rows].to(device),
                    labels[rows].to(device),
                    temperature,
                    alpha,
                    class_weight,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                progress.advance(1, loss=f"{loss.item():.3f}")
    model.eval().cpu()
    check = sample_pixels(data, 512, config, context.seed)
    teacher_top = targets[sample_rows(len(data), 512, context.seed)].argmax(1).numpy()
    metrics = {
        "distill_images": len(data),
        "distill_epochs": epochs,
        "distill_seconds": round(time.perf_counter() - started, 1),
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "student": config.architecture,
        "parameters": sum(p.numel() for p in model.parameters()),
        # On training images; the search measures held-out images.
        "teacher_agreement": float((torch_image_logits(model, check).argmax(1) == teacher_top).mean()),
    }

    def populate(folder: Path) -> None:
        save_image_model(folder, model, config)

    return derived_bundle(
        source,
        "distill",
        populate,
        context.store,
        format="torch",
        precision=source.precision,
        options={
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "temperature": temperature,
            "alpha": alpha,
            "shift": shift,
            "student": config.architecture,
        },
        metrics=metrics,
    )
