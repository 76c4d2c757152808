"""The tuning recipe, chosen for CPUs where every forward pass counts.

1. Tokenize once; batch by length so padding is per batch, not per corpus.
2. Warm-start the head: embed the training set once with the frozen encoder and fit a
   multinomial logistic regression on it. That is already the whole `head` method, and for the
   other methods fine-tuning starts from a good classifier instead of a random one.
3. Fine-tune (full, LoRA, IA3) with separate learning rates for encoder and head, warm-up then
   linear decay; stop early and keep the best epoch.
4. Judge each epoch as it will ship: the final model is a logistic-regression head on the tuned
   encoder's features, so each epoch (and epoch 0, the frozen encoder) is scored by such a head,
   fitted on the epoch's training features, on the held-out validation split.
5. Optionally weigh classes equally (`class_weight="balanced"`) in the loss, the heads and the
   validation scores alike, for skewed training data such as auto-labelled rows (docs/tuning.md).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from torch import nn
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from frugalml.data import Dataset, validation_split
from frugalml.errors import FrugalError
from frugalml.models import FrugalTextClassifier, load_tokenizer, new_classifier
from frugalml.models.batching import collate, length_batches, run_model, tokenize, usable_length
from frugalml.progress import Reporter, SilentReporter
from frugalml.resources import peak_rss_mb
from frugalml.tune.config import TuneConfig
from frugalml.tune.methods import get_method


@dataclass
class TuneResult:
    model: FrugalTextClassifier  # merged: a plain classifier, adapters folded in
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    peft_model: nn.Module | None  # the PEFT-wrapped model, for saving the adapter
    trainable_params: int
    total_params: int
    train_seconds: float
    peak_rss_mb: float
    val_accuracy: float  # of the kept epoch, head fitted on the training split (balanced if class_weight)
    epochs_run: int
    history: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)


HEAD_C_GRID = (0.01, 0.03, 0.1, 0.3)  # for standardized features; strongest first


def tune(train: Dataset, config: TuneConfig, reporter: Reporter | None = None) -> TuneResult:
    """Train a classifier on `train` with `config.method`; returns the best model found."""
    reporter = reporter or SilentReporter()
    method = get_method(config.method)
    train.check_trainable()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()

    labels = train.label_names
    fit_part, val_part = validation_split(train, config.val_fraction, config.seed)
    tokenizer = load_tokenizer(config.base)
    model = new_classifier(config.base, labels)
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

    with reporter.task("embedding (frozen encoder)", None):
        fit_x = run_model(model, fit_ids, pad, pool=True)
        val_x = run_model(model, val_ids, pad, pool=True)
    # One BLAS thread: L-BFGS multiplies small matrices, and OpenBLAS's threads spin against torch's
    # and each other on a 2-core machine.
    with reporter.task("classifier head (logistic regression)", None), threadpool_limits(1, user_api="blas"):
        c_value, head = _choose_c(fit_x, fit_y, val_x, val_y, config.head_c, len(labels), balanced)
    _set_head(model, head)  # the warm start for fine-tuning
    val_acc, val_loss = _val_scores(val_x @ head[0].T + head[1], val_y, balanced)
    history = [{"epoch": 0, "val_accuracy": val_acc, "val_loss": val_loss, "head_c": c_value}]
    features = (fit_x, val_x)  # of the kept epoch: the final head is fitted on them

    def score(fit_features: np.ndarray, val_features: np.ndarray) -> tuple[float, float]:
        """Validation accuracy and loss of the head the final model would get on these features."""
        with threadpool_limits(1, user_api="blas"):
            head = _fit_head(fit_features, fit_y, c_value, len(labels), balanced)
        return _val_scores(val_features @ head[0].T + head[1], val_y, balanced)

    trained = method.prepare(model, asdict(config))
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    peft_model = trained if trained is not model else None
    epochs_run = 0
    if config.epochs is None:  # the caller's config stays as given
        config = replace(config, epochs=auto_epochs(len(fit_part)))
    assert config.epochs is not None
    if method.trains_encoder and config.epochs > 0:
        rows = _Rows(fit_ids, fit_y, row_weights(fit_y, balanced), val_ids, pad)
        encoder_lr = config.lr if config.lr is not None else method.encoder_lr
        val_acc, epochs_run, features, epoch_scores = _fine_tune(
            trained, rows, config, encoder_lr, score, rng, reporter, history[0], features
        )
        history += epoch_scores
    final = _merged(trained) if peft_model is not None else model  # no PEFT: `trained` is `model`
    final.eval()
    # The validation split has chosen C (and the epoch): the final head sees every labelled row,
    # on the kept encoder's features. With 10 labels per intent that one more row per class is
    # worth about half a point on BANKING77 (LoRA, bench/banking77.py: 85.8 % without it, 86.3 % with).
    with reporter.task("final head on all rows", None), threadpool_limits(1, user_api="blas"):
        head = _fit_head(np.vstack(features), np.concatenate([fit_y, val_y]), c_value, len(labels), balanced)
        _set_head(final, head)
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
        epochs_run=epochs_run,
        history=history,
        config=asdict(config),
    )


@dataclass
class _Rows:
    """The tokenized rows fine-tuning reads."""

    fit_ids: list
    fit_y: np.ndarray
    fit_weights: np.ndarray  # each training row's weight in the loss
    val_ids: list
    pad: int


def _fine_tune(
    model, rows: _Rows, config, encoder_lr, score, rng, reporter, start: dict, features
) -> tuple[float, int, tuple[np.ndarray, np.ndarray], list[dict]]:
    """Train from `start`, the frozen encoder's scores; return the kept epoch's validation accuracy,
    the epochs run, the kept epoch's (fit, val) features and each epoch's scores."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" in n]
    body = [p for n, p in model.named_parameters() if p.requires_grad and "classifier" not in n]
    optimizer = torch.optim.AdamW(
        [{"params": body, "lr": encoder_lr}, {"params": head, "lr": config.head_lr}],
        weight_decay=config.weight_decay,
    )
    lengths = [len(ids) for ids in rows.fit_ids]
    steps_per_epoch = len(length_batches(lengths, config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup * total_steps), total_steps)
    best = start["val_loss"]
    best_acc, best_state = start["val_accuracy"], _trainable_state(model)
    history = []
    stale = epochs = 0
    labels_t = torch.as_tensor(rows.fit_y)
    weights_t = torch.as_tensor(rows.fit_weights, dtype=torch.float32)
    with reporter.task(f"fine-tuning ({config.method})", total_steps) as progress:
        for epoch in range(1, config.epochs + 1):
            model.train()
            losses = []
            for batch_index in length_batches(lengths, config.batch_size, rng):
                batch = collate([rows.fit_ids[i] for i in batch_index], rows.pad)
                row_losses = nn.functional.cross_entropy(
                    model(**batch).logits, labels_t[batch_index], reduction="none"
                )
                weights = weights_t[batch_index]
                loss = (row_losses * weights).sum() / weights.sum()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(body + head, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
                progress.advance(1, loss=f"{loss.item():.3f}")
            epochs = epoch
            epoch_features = (
                run_model(model, rows.fit_ids, rows.pad, pool=True),
                run_model(model, rows.val_ids, rows.pad, pool=True),
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
            history.append(
                {"epoch": epoch, "loss": float(np.mean(losses)), "val_accuracy": acc, "val_loss": loss}
            )
            # Validation loss, not accuracy: on a few hundred or thousand rows accuracy moves in
            # coarse, noisy steps (BANKING77: +-0.4 points between epochs) while loss is smooth.
            if loss < best:
                best, best_acc, best_state, stale = loss, acc, _trainable_state(model), 0
                features = epoch_features
            else:
                stale += 1
                if stale > config.patience:
                    break
    model.load_state_dict(best_state, strict=False)
    return best_acc, epochs, features, history


def _val_scores(logits: np.ndarray, y: np.ndarray, balanced: bool = False) -> tuple[float, float]:
    """Accuracy and mean log loss; `balanced`: every class of `y` counts the same."""
    log_probs = torch.log_softmax(torch.from_numpy(logits), dim=-1).numpy()
    weights = row_weights(y, balanced)
    accuracy = np.average(logits.argmax(1) == y, weights=weights)
    return float(accuracy), float(np.average(-log_probs[np.arange(len(y)), y], weights=weights))


def row_weights(y: np.ndarray, balanced: bool) -> np.ndarray:
    """Each row's weight: 1, or with `balanced` scikit-learn's "balanced" weights, rows / (classes
    present x rows of the row's class), so that every class counts the same in total."""
    if not balanced:
        return np.ones(len(y))
    counts = np.bincount(y)
    return len(y) / (np.count_nonzero(counts) * counts[y])


def auto_epochs(rows: int) -> int:
    """Enough passes for about 8,000 training examples in all, between 3 and 10 epochs."""
    return min(10, max(3, -(-8000 // max(rows, 1))))


def _choose_c(fit_x, fit_y, val_x, val_y, fixed: float | None, n_classes: int, balanced: bool = False):
    """The regularization strength with the best validation accuracy, and its head.

    One estimator walks the grid from strong to weak regularization, warm-starting each fit
    from the previous solution, which costs far fewer iterations than fitting each C afresh.
    """
    scaler = _Standardizer(fit_x)
    clf = LogisticRegression(max_iter=3000, warm_start=True)
    best = None
    for c in (fixed,) if fixed is not None else HEAD_C_GRID:
        clf.set_params(C=c).fit(scaler(fit_x), fit_y, sample_weight=row_weights(fit_y, balanced))
        head = _as_linear(clf, scaler, n_classes)
        acc, _ = _val_scores(val_x @ head[0].T + head[1], val_y, balanced)
        if best is None or acc > best[0]:  # ties keep the stronger regularization
            best = (acc, c, head)
    assert best is not None  # the grid is never empty
    return best[1], best[2]


def _fit_head(
    x: np.ndarray, y: np.ndarray, c: float, n_classes: int, balanced: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardized features, folded into one Linear layer.

    Standardizing first makes one C grid fit any encoder: sentence vectors often share a large
    common direction that leaves the class signal in small coordinates.
    """
    scaler = _Standardizer(x)
    clf = LogisticRegression(C=c, max_iter=3000).fit(scaler(x), y, sample_weight=row_weights(y, balanced))
    return _as_linear(clf, scaler, n_classes)


class _Standardizer:
    def __init__(self, x: np.ndarray):
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


def _as_linear(
    clf: LogisticRegression, scaler: _Standardizer, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias of one Linear layer equal to scaler + logistic regression."""
    if len(clf.classes_) == 2:  # sklearn keeps one row for two classes
        coef = np.vstack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
        intercept = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    else:
        coef, intercept = clf.coef_, clf.intercept_
    weight = np.zeros((n_classes, coef.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -1e4, dtype=np.float32)  # classes absent from training: never predicted
    weight[clf.classes_] = coef / scaler.std
    bias[clf.classes_] = intercept - (coef / scaler.std) @ scaler.mean
    return weight, bias


def _set_head(model: FrugalTextClassifier, head: tuple[np.ndarray, np.ndarray]) -> None:
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(head[0]))
        model.classifier.bias.copy_(torch.from_numpy(head[1]))


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def _merged(peft_model: nn.Module) -> FrugalTextClassifier:
    """A plain classifier with the adapters folded into its weights (the PEFT model is kept)."""
    wrapped: Any = copy.deepcopy(peft_model)  # a peft PeftModel, typed as nn.Module
    return wrapped.merge_and_unload()
