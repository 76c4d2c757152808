"""The tuning recipe, chosen for CPUs where every forward pass counts.

1. Tokenize once; batch by length so padding is per batch, not per corpus.
2. Warm-start the head: embed the training set once with the frozen encoder and fit a
   multinomial logistic regression on it (heads.py). That is already the whole `head` method,
   and for the other methods fine-tuning starts from a good classifier instead of a random one.
3. Fine-tune (full, LoRA, IA3) with separate learning rates for encoder and head, warm-up then
   linear decay; stop early and keep the best epoch (loop.py).
4. Judge each epoch as it will ship: the final model is a logistic-regression head on the tuned
   encoder's features, so each epoch (and epoch 0, the frozen encoder) is scored by such a head,
   fitted on the epoch's training features, on the held-out validation split.
5. Optionally weigh classes equally (`class_weight="balanced"`) in the loss, the heads and the
   validation scores alike, for skewed training data such as auto-labelled rows (docs/tuning.md).

Where it computes (`TuneCompute`): one process on a device, or data-parallel workers
(distributed.py) that each run this same function.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn
from transformers import PreTrainedTokenizerBase

from frugalml.data import Dataset, validation_split
from frugalml.devices import resolve_device
from frugalml.evaluate.perturb import epoch_noise, noisy_copies
from frugalml.lineage import open_store
from frugalml.models import FrugalTextClassifier, load_tokenizer, new_classifier
from frugalml.models.batching import tokenize, usable_length
from frugalml.progress import Reporter, SilentReporter
from frugalml.resources import peak_rss_mb
from frugalml.settings import get_settings
from frugalml.tune import distributed
from frugalml.tune.adapter import merge_reparameterisation
from frugalml.tune.config import TuneCompute, TuneConfig
from frugalml.tune.heads import choose_c, fit_head, row_weights, set_head, val_scores
from frugalml.tune.loop import Checkpointing, EpochHook, Kept, Rows, fine_tune, trainable_state
from frugalml.tune.methods import get_method
from frugalml.tune.transfer import carry_over, parent_bundle


@dataclass
class TuneResult:
    model: FrugalTextClassifier  # merged: a plain classifier, adapters folded in; on the CPU
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    peft_model: nn.Module | None  # the PEFT-wrapped model, for saving the adapter
    trainable_params: int
    total_params: int
    train_seconds: float
    peak_rss_mb: float
    val_accuracy: float  # of the kept epoch, head fitted on the training split (balanced if class_weight)
    val_loss: float  # of the kept epoch, likewise
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    adapter_bytes: int = 0  # the method's trained weights apart from the head


def tune(
    train: Dataset,
    config: TuneConfig,
    reporter: Reporter | None = None,
    compute: TuneCompute | None = None,
    checkpointing: Checkpointing | None = None,
    storage: Path | None = None,
    on_epoch: EpochHook | None = None,
) -> TuneResult:
    """Train a classifier on `train` with `config.method`; returns the best model found.

    `compute`: the device and the number of data-parallel workers; `checkpointing`: where to
    checkpoint and what to continue from; `storage`: Ray Train's folder (`--backend ray`;
    default FRUGALML_HOME/ray); `on_epoch`: hears each epoch's validation loss (one local
    process only).
    """
    reporter = reporter or SilentReporter()
    compute = compute or TuneCompute()
    train.check_trainable()
    fine_tunes = get_method(config.method).trains_encoder and config.epochs != 0
    if (compute.workers == 1 and compute.backend == "local") or not fine_tunes:  # nothing to share out
        return train_worker(
            train,
            config,
            checkpointing,
            device=resolve_device(compute.device),
            reporter=reporter,
            on_epoch=on_epoch,
        )
    started = time.perf_counter()
    run = f", run {checkpointing.run_id}" if checkpointing is not None else ""
    with reporter.task(f"tuning on {compute.workers} workers ({compute.backend}{run})", None):
        result = distributed.launch(
            train_worker, (train, config, checkpointing), compute, storage or get_settings().home / "ray"
        )
    result.train_seconds = time.perf_counter() - started  # the workers' start included
    return result


def train_worker(
    train: Dataset,
    config: TuneConfig,
    checkpointing: Checkpointing | None,
    *,
    device: torch.device,
    reporter: Reporter | None = None,
    on_epoch: EpochHook | None = None,
) -> TuneResult:
    """The whole recipe in this process, on `device`; inside a process group, one worker's part."""
    reporter = reporter or SilentReporter()
    method = get_method(config.method)
    torch.manual_seed(config.seed)
    started = time.perf_counter()

    labels = train.label_names
    fit_part, val_part = validation_split(train, config.val_fraction, config.seed)
    if config.noise_copies:  # noisy copies train; the validation rows stay as written
        fit_part = _with_noisy_copies(fit_part, config)
    tokenizer = load_tokenizer(config.base)
    model = new_classifier(config.base, labels)
    start_head = None  # with --from: the parent's head rows, where the head's fit starts
    if config.parent is not None:
        parent = parent_bundle(config.parent, open_store(get_settings()), config.base)
        start_head = carry_over(model, parent, labels)
    nn.Module.to(model, device)  # transformers types its own `to` narrowly
    # The bundle's tokenizer carries the length the model trains with, for every predictor and for
    # transformers' own loading of the bundle (truncation=True) to cut texts where training did.
    tokenizer.model_max_length = usable_length(config.max_length, tokenizer, model.config.encoder)
    pad = tokenizer.pad_token_id
    index = {label: i for i, label in enumerate(labels)}
    fit_ids, val_ids = (
        tokenize(tokenizer, d.texts, tokenizer.model_max_length) for d in (fit_part, val_part)
    )
    assert fit_part.labels is not None and val_part.labels is not None  # check_trainable: labelled
    fit_y = np.array([index[y] for y in fit_part.labels])
    val_y = np.array([index[y] for y in val_part.labels])
    balanced = config.class_weight == "balanced"

    # A method that changes the frozen encoder's outputs (a soft prompt) is added first, so the
    # warm-start head and epoch 0's score see the features the method trains from.
    trained = method.prepare(model, asdict(config)) if method.changes_outputs else model
    with reporter.task("embedding (frozen encoder)", None):
        fit_x = distributed.features(model, fit_ids, pad)
        val_x = distributed.features(model, val_ids, pad)
    # One BLAS thread: L-BFGS multiplies small matrices, and OpenBLAS's threads spin against torch's
    # and each other on a 2-core machine.
    with reporter.task("classifier head (logistic regression)", None), threadpool_limits(1, user_api="blas"):
        c_value, head = choose_c(
            fit_x, fit_y, val_x, val_y, config.head_c, len(labels), balanced, start=start_head
        )
    set_head(model, head)  # the warm start for fine-tuning
    val_acc, val_loss = val_scores(val_x @ head[0].T + head[1], val_y, balanced)
    history: list[dict[str, Any]] = [
        {"epoch": 0, "val_accuracy": val_acc, "val_loss": val_loss, "head_c": c_value}
    ]
    features = (fit_x, val_x)  # of the kept epoch: the final head is fitted on them

    def score(fit_features: np.ndarray, val_features: np.ndarray) -> tuple[float, float]:
        """Validation accuracy and loss of the head the final model would get on these features."""
        with threadpool_limits(1, user_api="blas"):
            head = fit_head(fit_features, fit_y, c_value, len(labels), balanced)
        return val_scores(val_features @ head[0].T + head[1], val_y, balanced)

    if not method.changes_outputs:  # starts as the identity (LoRA, IA3, adapters): after the head
        trained = method.prepare(model, asdict(config))
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    # What the method adds or changes apart from the head, as stored (full: the whole encoder).
    adapter_bytes = sum(
        p.numel() * p.element_size()
        for n, p in trained.named_parameters()
        if p.requires_grad and "classifier" not in n
    )
    total = sum(p.numel() for p in model.parameters())
    peft_model = trained if trained is not model else None
    epochs_run = 0
    if config.epochs is None:  # the caller's config stays as given
        config = replace(config, epochs=auto_epochs(len(fit_part)))
    assert config.epochs is not None
    if method.trains_encoder and config.epochs > 0:
        rows = Rows(fit_ids, fit_y, row_weights(fit_y, balanced), val_ids, pad)
        if config.noise_share:
            rows.epoch_ids = _epoch_noise_ids(fit_part.texts, fit_ids, config, tokenizer)
        start = Kept(val_loss, val_acc, trainable_state(trained), features)  # epoch 0: frozen encoder
        kept, epochs_run, epoch_scores = fine_tune(
            trained,
            rows,
            config,
            method.encoder_optimizer(config),
            score,
            reporter,
            start,
            device,
            checkpointing,
            on_epoch,
        )
        val_acc, val_loss, features = kept.val_accuracy, kept.val_loss, kept.features
        history += epoch_scores
    trained.to("cpu")  # the bundle, and the final head, on the CPU
    merge_reparameterisation(trained)  # a prefix MLP's output becomes plain prefixes
    final = _merged(trained) if peft_model is not None else model  # no PEFT: `trained` is `model`
    final.eval()
    # The validation split has chosen C (and the epoch): the final head sees every labelled row,
    # on the kept encoder's features. With 10 labels per intent that one more row per class is
    # worth about half a point on BANKING77 (LoRA, bench/banking77.py: 85.8 % without it, 86.3 % with).
    with reporter.task("final head on all rows", None), threadpool_limits(1, user_api="blas"):
        head = fit_head(np.vstack(features), np.concatenate([fit_y, val_y]), c_value, len(labels), balanced)
        set_head(final, head)
    if peft_model is not None:  # the adapter saves its own copy of the head: keep it the same
        for name, module in peft_model.named_modules():
            if name.endswith("classifier.modules_to_save.default"):
                module.load_state_dict(final.classifier.state_dict())
    for param in final.parameters():
        param.requires_grad = True
    return TuneResult(
        model=final,
        tokenizer=tokenizer,
        labels=labels,
        peft_model=peft_model,
        trainable_params=trainable,
        total_params=total,
        train_seconds=time.perf_counter() - started,
        peak_rss_mb=peak_rss_mb(),
        val_accuracy=val_acc,
        val_loss=val_loss,
        epochs_run=epochs_run,
        history=history,
        config=asdict(config),
        adapter_bytes=adapter_bytes,
    )


def _with_noisy_copies(rows: Dataset, config: TuneConfig) -> Dataset:
    assert config.noise is not None and config.noise_copies is not None and rows.labels is not None
    copies = config.noise_copies
    texts = rows.texts + noisy_copies(rows.texts, config.noise, copies=copies, seed=config.seed)
    ids = rows.ids + [f"{i}~noise{k}" for k in range(1, copies + 1) for i in rows.ids]
    return Dataset(texts=texts, labels=rows.labels * (copies + 1), ids=ids, source=rows.source)


def _epoch_noise_ids(
    texts: list[str], clean_ids: list, config: TuneConfig, tokenizer: Any
) -> Callable[[int], list]:
    spec, share = config.noise, config.noise_share
    assert spec is not None and share is not None

    def ids(epoch: int) -> list:
        """The clean ids, with only the texts the noise changed tokenized again."""
        noisy = epoch_noise(texts, spec, share=share, seed=config.seed, epoch=epoch)
        changed = [i for i, (a, b) in enumerate(zip(noisy, texts, strict=True)) if a != b]
        out = list(clean_ids)
        if not changed:
            return out
        new = tokenize(tokenizer, [noisy[i] for i in changed], tokenizer.model_max_length)
        for i, row in zip(changed, new, strict=True):
            out[i] = row
        return out

    return ids


def auto_epochs(rows: int) -> int:
    """Enough passes for about 8,000 training examples in all, between 3 and 10 epochs."""
    return min(10, max(3, -(-8000 // max(rows, 1))))


def _merged(peft_model: nn.Module) -> FrugalTextClassifier:
    """A plain classifier with the adapters folded into its weights (the PEFT model is kept)."""
    wrapped: Any = copy.deepcopy(peft_model)  # a peft PeftModel, typed as nn.Module
    return wrapped.merge_and_unload()
