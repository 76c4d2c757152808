"""Fine-tuning: the optimizer loop of the tuning recipe (trainer.py).

AdamW with separate learning rates for encoder and head, warm-up then linear decay, gradient
clipping at 1.0; after each epoch the head the final model would ship is scored on the validation
split and the epoch with the lowest validation loss is kept. On top of that, the loop:

- checkpoints every `every` steps (trainable weights, optimizer, scheduler, every worker's random
  states, the data position and the kept epoch) and continues exactly from such a checkpoint: the
  batch order depends only on the seed and the epoch, so a resumed run sees the batches an
  uninterrupted one would;
- trains data-parallel inside a torch.distributed process group (distributed.py);
- computes in mixed precision on GPUs (devices.autocast), in fp32 on CPUs;
- optionally trains against adversarial perturbations of the word embeddings (adversarial.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from frugalml.devices import autocast, autocast_dtype
from frugalml.errors import FrugalError
from frugalml.models.batching import collate, length_batches
from frugalml.progress import Reporter
from frugalml.tune import adversarial, distributed
from frugalml.tune.checkpoint import save_checkpoint
from frugalml.tune.config import TuneConfig

Scorer = Callable[[np.ndarray, np.ndarray], tuple[float, float]]  # features -> val accuracy, loss
EpochHook = Callable[[int, float], None]  # (epoch, validation loss), after each epoch; may raise


@dataclass
class Rows:
    """The tokenized rows fine-tuning reads."""

    fit_ids: list
    fit_y: np.ndarray
    fit_weights: np.ndarray  # each training row's weight in the loss
    val_ids: list
    pad: int
    # Fresh noise: the fit rows' ids for an epoch (1, 2, ...), where some texts are noisy; the
    # labels, weights and the clean `fit_ids` (scored after each epoch) stay.
    epoch_ids: Callable[[int], list] | None = None

    def train_ids(self, epoch: int) -> list:
        return self.fit_ids if self.epoch_ids is None else self.epoch_ids(epoch)


@dataclass
class Kept:
    """The best epoch so far: its validation scores, trainable weights and (fit, val) features."""

    val_loss: float
    val_accuracy: float
    state: dict[str, torch.Tensor]
    features: tuple[np.ndarray, np.ndarray]


@dataclass
class Checkpointing:
    """Where the loop writes checkpoints and which one, if any, it continues from."""

    folder: Path
    every: int  # optimizer steps between checkpoints; 0 = never
    run_id: str
    start: dict[str, Any] | None = None


@dataclass
class _Position:
    """Where training stands: the next batch is `step` (0-based) of `epoch`."""

    epoch: int = 1
    step: int = 0
    loss_sum: float = 0.0  # this worker's share of the epoch's batch losses so far
    stale: int = 0  # epochs since the validation loss last fell
    history: list[dict] = field(default_factory=list)


def make_optimizer(model: nn.Module, config: TuneConfig, encoder: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: the encoder's at `encoder` (learning rate, weight
    decay), the head's at `config.head_lr` and `config.weight_decay`."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" in n]
    body = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" not in n]
    encoder_lr, encoder_decay = encoder
    return torch.optim.AdamW(
        [
            {"params": body, "lr": encoder_lr, "weight_decay": encoder_decay},
            {"params": head, "lr": config.head_lr},
        ],
        weight_decay=config.weight_decay,
    )


def fine_tune(
    model: nn.Module,
    rows: Rows,
    config: TuneConfig,
    encoder: tuple[float, float],
    score: Scorer,
    reporter: Reporter,
    kept: Kept,
    device: torch.device,
    checkpointing: Checkpointing | None = None,
    on_epoch: EpochHook | None = None,
) -> tuple[Kept, int, list[dict]]:
    """Train from `kept`, the frozen encoder's epoch, with the encoder's trainable parameters at
    `encoder` (learning rate, weight decay); return the kept epoch, the epochs run and each
    epoch's scores. The model ends with the kept epoch's weights. `on_epoch` hears each epoch's
    validation loss (a search prunes a trial by raising there)."""
    assert config.epochs is not None  # resolved by the trainer
    optimizer = make_optimizer(model, config, encoder)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    encoder_lr = encoder[0]
    lengths = [len(ids) for ids in rows.fit_ids]
    steps_per_epoch = len(length_batches(lengths, config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup * total_steps), total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)
    position = _Position()
    if checkpointing is not None and checkpointing.start is not None:
        kept, position = _restore(checkpointing.start, model, optimizer, scheduler, scaler, config)
    net = distributed.wrap(model, device)
    labels_t = torch.as_tensor(rows.fit_y, device=device)
    weights_t = torch.as_tensor(rows.fit_weights, dtype=torch.float32, device=device)
    epochs = position.epoch - 1
    run = f", run {checkpointing.run_id}" if checkpointing is not None else ""
    with reporter.task(f"fine-tuning ({config.method}{run})", total_steps) as progress:
        progress.advance((position.epoch - 1) * steps_per_epoch + position.step)
        for epoch in range(position.epoch, config.epochs + 1):
            net.train()
            started = time.perf_counter()
            # The order depends on the seed and the epoch alone: a resumed run replays it.
            batches = length_batches(lengths, config.batch_size, np.random.default_rng([config.seed, epoch]))
            train_ids = rows.train_ids(epoch)
            for step in range(position.step, len(batches)):
                index, factor = distributed.shard(batches[step])
                batch = {k: v.to(device) for k, v in collate([train_ids[i] for i in index], rows.pad).items()}
                part = adversarial.train_batch(
                    config.adversarial,
                    net=net,
                    model=model,
                    mask=batch["attention_mask"],
                    loss=partial(
                        _batch_loss,
                        batch=batch,
                        labels=labels_t[index],
                        weights=weights_t[index],
                        total=weights_t[batches[step]].sum(),
                        device=device,
                    ),
                    backward=partial(_backward, scaler, factor),
                    epsilon=config.adv_epsilon,
                    steps=config.adv_steps,
                )
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                position.loss_sum += part.item() * (factor > 0)
                position.step = step + 1
                progress.advance(1, loss=f"{part.item() * distributed.rank_and_size()[1]:.3f}")
                done = (epoch - 1) * steps_per_epoch + position.step
                if checkpointing is not None and checkpointing.every and done % checkpointing.every == 0:
                    _save(checkpointing, done, model, optimizer, scheduler, scaler, config, kept, position)
            seconds = time.perf_counter() - started
            epochs = epoch
            epoch_features = (
                distributed.features(model, rows.fit_ids, rows.pad),
                distributed.features(model, rows.val_ids, rows.pad),
            )
            if not all(np.isfinite(f).all() for f in epoch_features):
                raise FrugalError(
                    f"fine-tuning diverged in epoch {epoch} (the encoder's outputs are no longer finite "
                    f"numbers); lower the learning rate (now {encoder_lr:g})"
                )
            # The softmax head trained alongside is not what ships; scored by it, a better encoder
            # can lose to epoch 0's regularized head (docs/labelling.md, (a) draw 0). Score the
            # head the final model will have.
            acc, loss = score(*epoch_features)
            train_loss = sum(distributed.all_gather(position.loss_sum)) / len(batches)
            position.history.append(
                {
                    "epoch": epoch,
                    "loss": train_loss,
                    "val_accuracy": acc,
                    "val_loss": loss,
                    "seconds": seconds,
                }
            )
            position.epoch, position.step, position.loss_sum = epoch + 1, 0, 0.0
            if on_epoch is not None:
                on_epoch(epoch, loss)
            # Validation loss, not accuracy: on a few hundred or thousand rows accuracy moves in
            # coarse, noisy steps (BANKING77: +-0.4 points between epochs) while loss is smooth.
            if loss < kept.val_loss:
                kept = Kept(loss, acc, trainable_state(model), epoch_features)
                position.stale = 0
            else:
                position.stale += 1
                if position.stale > config.patience:
                    break
    model.load_state_dict(kept.state, strict=False)
    return kept, epochs, position.history


def _batch_loss(
    module: nn.Module,
    *,
    batch: dict[str, torch.Tensor],
    labels: torch.Tensor,
    weights: torch.Tensor,
    total: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """This worker's part of the batch's weighted mean loss (`total`: the whole batch's weight)."""
    with autocast(device):
        logits = module(**batch).logits
    row_losses = nn.functional.cross_entropy(logits.float(), labels, reduction="none")
    return (row_losses * weights).sum() / total


def _backward(scaler: torch.amp.GradScaler, factor: float, loss: torch.Tensor) -> None:
    # DDP averages the workers' gradients, so `factor` (the number of workers) makes their mean
    # the batch's.
    scaler.scale(loss * factor).backward()


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def _save(
    checkpointing: Checkpointing,
    done: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    config: TuneConfig,
    kept: Kept,
    position: _Position,
) -> None:
    """Checkpoint after `done` steps; every worker gives its random states, rank 0 writes."""
    states = distributed.all_gather(_random_states())
    if not distributed.is_main():
        return
    state = {
        "run_id": checkpointing.run_id,
        "config": asdict(config),
        "global_step": done,
        "epoch": position.epoch,
        "step": position.step,  # batches of `epoch` done; their order: seed and epoch
        "loss_sum": position.loss_sum,
        "stale": position.stale,
        "history": position.history,
        "model": {k: v.cpu() for k, v in trainable_state(model).items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "random": states,
        "kept": {
            "val_loss": kept.val_loss,
            "val_accuracy": kept.val_accuracy,
            "state": {k: v.cpu() for k, v in kept.state.items()},
            "features": [torch.from_numpy(f) for f in kept.features],
        },
    }
    save_checkpoint(checkpointing.folder, done, state)


def _restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    config: TuneConfig,
) -> tuple[Kept, _Position]:
    if state["config"] != asdict(config):
        changed = sorted(k for k, v in asdict(config).items() if state["config"].get(k) != v)
        raise FrugalError(
            f"run {state['run_id']}'s checkpoint was made with other settings ({', '.join(changed)}); "
            "resume it with the settings it started with"
        )
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in state["model"].items()}, strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    rank = distributed.rank_and_size()[0]
    states = state["random"]
    _set_random_states(states[rank % len(states)])  # exact when the number of workers is the same
    kept = state["kept"]
    return (
        Kept(
            kept["val_loss"],
            kept["val_accuracy"],
            {k: v.to(device) for k, v in kept["state"].items()},
            (kept["features"][0].numpy(), kept["features"][1].numpy()),
        ),
        _Position(state["epoch"], state["step"], state["loss_sum"], state["stale"], state["history"]),
    )


def _random_states() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = cast(tuple, np.random.get_state(legacy=True))
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _set_random_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
