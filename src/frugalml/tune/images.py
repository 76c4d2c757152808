"""Train an image classifier: augmented mini-batches, AdamW with warm-up and cosine decay, weighted
cross-entropy for skewed classes, and the epoch with the lowest validation loss kept.

1. The model is `config.model`, or by image size (`models.vision.default_architecture`); it
   normalises with the training images' per-channel mean and std.
2. Classes weigh the same in total (`class_weight="balanced"`, or `auto` when the largest class
   is balance.SKEWED times the smallest or more); validation loss is weighted the same way.
3. Training images are augmented (tune/augment.py) in groups of AUGMENT_GROUP, each group
   with its own random draw: a call per image costs as much as the model's step on small images.
4. After each epoch the validation split is scored; training stops `patience` epochs after the
   best validation loss, and that epoch's weights are returned.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from frugalml.data.images import ImageDataset
from frugalml.evaluate.metrics import roc_auc
from frugalml.models.vision import (
    ImageClassifier,
    ImageModelConfig,
    build_image_model,
    channel_stats,
    default_architecture,
)
from frugalml.progress import Reporter, SilentReporter
from frugalml.resources import peak_rss_mb
from frugalml.tune.augment import augmentation
from frugalml.tune.balance import class_weights
from frugalml.tune.config import ImageTuneConfig

AUGMENT_GROUP = 4  # images per draw of augmentation parameters


@dataclass
class ImageTuneResult:
    model: ImageClassifier  # the kept epoch's weights, in eval mode, on the CPU
    config: ImageModelConfig
    labels: list[str]
    trainable_params: int
    total_params: int
    train_seconds: float
    peak_rss_mb: float
    val_accuracy: float
    val_auc: float | None
    epochs_run: int
    history: list[dict] = field(default_factory=list)


def default_epochs(n: int) -> int:
    """30 epochs for 5,000 images; more for fewer (up to 60), fewer for more (down to 8)."""
    return int(min(60, max(8, round(150_000 / max(n, 1)))))


def tune_images(
    train: ImageDataset,
    val: ImageDataset,
    config: ImageTuneConfig,
    reporter: Reporter | None = None,
    device: torch.device | None = None,
) -> ImageTuneResult:
    """Train on `train`, select on `val` (both of one size and mode, labelled)."""
    reporter = reporter or SilentReporter()
    device = device or torch.device("cpu")
    names = train.label_names
    height, width = train.size
    size = max(height, width)
    architecture = config.model or default_architecture(size)
    mean, std = channel_stats(train.images)
    model_config = ImageModelConfig(architecture, len(names), train.channels, size, mean, std)
    torch.manual_seed(config.seed)
    model = build_image_model(architecture, len(names), train.channels, size, config.weights).to(device)
    index = {name: i for i, name in enumerate(names)}
    y = torch.tensor([index[label] for label in train.require_labels()])
    val_y = torch.tensor([index[label] for label in val.require_labels()])
    weights = class_weights(train.require_labels(), names, config.class_weight)
    weight_t = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    augment = augmentation(config.augment, size)
    epochs = config.epochs or default_epochs(len(train))
    steps_per_epoch = max(1, len(train) // config.batch_size)  # full batches: BatchNorm needs 2+ rows
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total_steps = epochs * steps_per_epoch
    warm = max(1, total_steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine decay to zero
        optimizer,
        lambda step: min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / total_steps)),
    )
    pixels = torch.from_numpy(train.images).permute(0, 3, 1, 2)  # uint8 NCHW, a view
    scale = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    best: tuple[float, int, dict] | None = None
    history: list[dict] = []
    started = time.perf_counter()
    with reporter.task(
        f"training {architecture} ({len(train)} images)", epochs * steps_per_epoch
    ) as progress:
        for epoch in range(1, epochs + 1):
            model.train()
            order = np.random.default_rng([config.seed, epoch]).permutation(len(train))
            total = 0.0
            for step in range(steps_per_epoch):
                rows = torch.from_numpy(order[step * config.batch_size : (step + 1) * config.batch_size])
                batch = pixels[rows]
                if augment is not None:
                    batch = torch.cat(
                        [augment(batch[g : g + AUGMENT_GROUP]) for g in range(0, len(batch), AUGMENT_GROUP)]
                    )
                x = ((batch.float() / 255 - scale[0]) / scale[1]).to(device)
                loss = F.cross_entropy(
                    model(x), y[rows].to(device), weight=weight_t, label_smoothing=config.label_smoothing
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                value = loss.item()
                total += value
                progress.advance(1, epoch=epoch, loss=f"{value:.3f}")
            scores = _validate(model, val, val_y, model_config, weight_t, device)
            history.append({"epoch": epoch, "train_loss": round(total / steps_per_epoch, 5), **scores})
            progress.advance(0, epoch=epoch, val_acc=f"{scores['val_accuracy']:.3f}")
            if best is None or scores["val_loss"] < best[0]:
                best = (scores["val_loss"], epoch, copy.deepcopy(model.state_dict()))
            elif epoch - best[1] > config.patience:
                progress.advance(epochs * steps_per_epoch - epoch * steps_per_epoch)
                break
    assert best is not None
    model.load_state_dict(best[2])
    kept = history[best[1] - 1]
    return ImageTuneResult(
        model=model.cpu().eval(),
        config=model_config,
        labels=names,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_params=sum(p.numel() for p in model.parameters()),
        train_seconds=time.perf_counter() - started,
        peak_rss_mb=peak_rss_mb(),
        val_accuracy=kept["val_accuracy"],
        val_auc=kept["val_auc"],
        epochs_run=len(history),
        history=history,
    )


@torch.inference_mode()
def _validate(
    model: ImageClassifier,
    val: ImageDataset,
    val_y: torch.Tensor,
    config: ImageModelConfig,
    weight: torch.Tensor | None,
    device: torch.device,
) -> dict:
    from frugalml.models.vision import preprocess

    model.eval()
    logits = torch.cat(
        [
            model(torch.from_numpy(preprocess(val.images[s : s + 256], config.mean, config.std)).to(device))
            for s in range(0, len(val), 256)
        ]
    ).cpu()
    loss = float(F.cross_entropy(logits, val_y, weight=None if weight is None else weight.cpu()))
    probabilities = torch.softmax(logits, 1).numpy()
    names = [str(i) for i in range(config.num_classes)]
    auc = roc_auc([str(int(v)) for v in val_y], probabilities, names)
    return {
        "val_loss": round(loss, 5),
        "val_accuracy": round(float((logits.argmax(1) == val_y).float().mean()), 5),
        "val_auc": None if auc is None else round(auc, 5),
    }
