"""Knowledge distillation: train a (pruned) student on the teacher's soft labels.

The teacher is the bundle compression started from, in whatever format it is; the student is the
source bundle (typically the output of `prune`). Training text is the labelled set, the
unlabelled texts given, and perturbed copies of the labelled texts (Tang et al., 2019: words
replaced by other corpus words or dropped, some texts cut to an n-gram). The teacher labels all
of it once; the loss is the temperature-scaled KL divergence to the teacher, plus cross-entropy on
the true label where there is one. Batches are length-grouped, so the CPU pads little.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F
from transformers import get_linear_schedule_with_warmup

from frugalml.bundle import Bundle
from frugalml.compress.checks import MAX_LENGTH, sample_texts, torch_logits
from frugalml.compress.context import CompressContext, derived_bundle, load_torch, save_torch
from frugalml.compress.prune import pruned_entries, rezero
from frugalml.devices import autocast, autocast_dtype, resolve_device
from frugalml.models.batching import collate, length_batches, tokenize
from frugalml.runtime import load_predictor


def augment(
    texts: Sequence[str],
    copies: int,
    rng: np.random.Generator,
    replace: float = 0.1,
    drop: float = 0.1,
    ngram: float = 0.25,
) -> list[str]:
    """`copies` perturbed versions of each text, made only of words the texts already use.

    Each word is replaced by a random corpus word with probability `replace`, else dropped with
    probability `drop`; then, with probability `ngram`, the text is cut to a random span of at
    least half its words. Texts that would come out empty are skipped.
    """
    words = [text.split() for text in texts]
    vocabulary = [w for ws in words for w in ws]
    out = []
    for _ in range(copies):
        for ws in words:
            new = []
            for word in ws:
                roll = rng.random()
                if roll < replace:
                    new.append(vocabulary[rng.integers(len(vocabulary))])
                elif roll >= replace + drop:
                    new.append(word)
            if len(new) > 2 and rng.random() < ngram:
                length = int(rng.integers((len(new) + 1) // 2, len(new) + 1))
                start = int(rng.integers(0, len(new) - length + 1))
                new = new[start : start + length]
            if new:
                out.append(" ".join(new))
    return out


def teacher_log_probs(teacher: Bundle, texts: Sequence[str], device: str = "cpu") -> np.ndarray:
    """Log-probabilities of the teacher: logits up to a per-row constant, in any bundle format."""
    probabilities = load_predictor(teacher, device=device).predict_proba(list(texts))
    return np.log(np.maximum(probabilities, 1e-30))


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """(1 - alpha) * T^2 * KL(teacher_T || student_T) + alpha * CE on rows with a label (>= 0)."""
    soft = (
        F.kl_div(
            F.log_softmax(student / temperature, -1),
            F.log_softmax(teacher / temperature, -1),
            log_target=True,
            reduction="batchmean",
        )
        * temperature**2
    )
    labelled = labels >= 0
    if not labelled.any():
        return soft
    return (1 - alpha) * soft + alpha * F.cross_entropy(student[labelled], labels[labelled])


def distill(
    source: Bundle,
    context: CompressContext,
    epochs: int = 3,
    lr: float = 1e-4,
    head_lr: float = 1e-3,
    batch_size: int = 32,
    temperature: float = 2.0,
    alpha: float = 0.5,
    augment_copies: int = 1,
    warmup: float = 0.1,
) -> Bundle:
    started = time.perf_counter()
    device = resolve_device(context.device)
    rng = np.random.default_rng(context.seed)
    torch.manual_seed(context.seed)
    model, tokenizer = load_torch(source)
    model.train().to(device)
    train = context.text_data
    index = {label: i for i, label in enumerate(source.labels)}
    texts = [*train.texts, *context.unlabelled, *augment(train.texts, augment_copies, rng)]
    labels = np.full(len(texts), -1)
    labels[: len(train)] = [index[y] for y in train.require_labels()]
    with context.reporter.task("teacher labels", None):
        targets = torch.from_numpy(teacher_log_probs(context.teacher, texts, context.device)).to(device)
    ids = tokenize(tokenizer, texts, MAX_LENGTH)
    lengths = [len(row) for row in ids]
    labels_t = torch.as_tensor(labels, device=device)

    head = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier.")]
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": lr}, {"params": head, "lr": head_lr}], weight_decay=0.01
    )
    total = len(length_batches(lengths, batch_size)) * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup * total), total)
    zeroed = pruned_entries(model)  # width-pruned blocks stay pruned
    # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (a no-op then).
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)
    losses: list[float] = []
    with context.reporter.task(f"distilling into {source.name}", total) as progress:
        for _ in range(epochs):
            for batch_index in length_batches(lengths, batch_size, rng):
                batch = collate([ids[i] for i in batch_index], tokenizer.pad_token_id)
                with autocast(device):
                    logits = model(**{name: tensor.to(device) for name, tensor in batch.items()}).logits
                rows = torch.as_tensor(batch_index, device=device)
                loss = distillation_loss(logits.float(), targets[rows], labels_t[rows], temperature, alpha)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)  # the clip below sees true gradients
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                rezero(zeroed)
                losses.append(loss.item())
                progress.advance(1, loss=f"{loss.item():.3f}")
    model.eval()
    check = sample_texts(train.texts, 512, context.seed)
    teacher_top = teacher_log_probs(context.teacher, check, context.device).argmax(1)
    metrics = {
        "distill_texts": len(texts),
        "distill_epochs": epochs,
        "distill_seconds": round(time.perf_counter() - started, 1),
        "final_loss": float(np.mean(losses[-50:])),
        # On training text; the search measures held-out text.
        "teacher_agreement": float((torch_logits(model, tokenizer, check).argmax(1) == teacher_top).mean()),
    }
    return derived_bundle(
        source,
        "distill",
        save_torch(model, tokenizer),
        context.store,
        format="torch",
        precision=source.precision,
        options={
            "epochs": epochs,
            "lr": lr,
            "head_lr": head_lr,
            "batch_size": batch_size,
            "temperature": temperature,
            "alpha": alpha,
            "augment_copies": augment_copies,
            "unlabelled": len(context.unlabelled),
        },
        metrics=metrics,
    )
