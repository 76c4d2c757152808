"""Knowledge distillation: train a (pruned) student on the teacher's soft labels.

The teacher is the bundle compression started from, in whatever format it is; the student is the
source bundle (typically the output of `prune`). Training text is the labelled set, the
unlabelled texts given, and copies of the labelled texts: perturbed (Tang et al., 2019: words
replaced by other corpus words or dropped, some texts cut to an n-gram) or, `splice` of them (none
by default), the start of one text joined to the end of another of any label (or of the same
label, `splice_within`). Splicing half the copies moved the default 3-layer student by +0.56,
-0.10 and -0.03 test points over three draws of 20 texts per intent (bench/distill.py,
bench/compress.py): no gain to count on, so it stays an option. The teacher labels all of it
once; the loss is the temperature-scaled KL divergence to the teacher, plus cross-entropy on the
true label where there is one. Batches are length-grouped, so the CPU pads little.

Intermediate layers (MiniLM and TinyBERT distil them too): the student is initialised from the
teacher's own layers (`prune` keeps evenly spaced ones), and when the teacher is a PyTorch bundle
each student layer is also pulled towards the teacher layer it came from: the loss adds
`hidden` x the mean over layers of 1 - cosine(student, teacher) of the layer's mean-pooled token
states. The teacher's states are computed with its logits in one pass, once for all the students
of a search.

Attention (MiniLMv2, Wang et al. 2021): with `attention` > 0 the loss also adds `attention` x
the KL divergence of the student's last-layer self-attention relations from the teacher's
(compress/relations.py); texts the (trimmed) student tokenizes differently from the teacher are
left out of it.
Off by default: with 20 labelled texts per intent it cost accuracy beside the layer states
(bench/distill.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from transformers import get_linear_schedule_with_warmup

from frugalml.bundle import Bundle
from frugalml.compress.checks import MAX_LENGTH, sample_texts, torch_logits
from frugalml.compress.context import CompressContext, derived_bundle, load_torch, save_torch
from frugalml.compress.prune import encoder_layers, layer_indices, pruned_entries, rezero
from frugalml.compress.relations import Projections, padded_projections, relation_loss
from frugalml.devices import autocast, autocast_dtype, resolve_device
from frugalml.models import FrugalTextClassifier
from frugalml.models.batching import collate, iterate_batches, length_batches, tokenize
from frugalml.runtime import load_predictor
from frugalml.tune.balance import class_weights


def augment(
    texts: Sequence[str],
    copies: int,
    rng: np.random.Generator,
    replace: float = 0.1,
    drop: float = 0.1,
    ngram: float = 0.25,
    splice: float = 0.0,
    groups: Sequence[str] | None = None,
) -> list[str]:
    """`copies` perturbed versions of each text, made only of words the texts already use.

    Each word is replaced by a random corpus word with probability `replace`, else dropped with
    probability `drop`; then, with probability `ngram`, the text is cut to a random span of at
    least half its words. With probability `splice` a copy is instead the text's words up to a
    random cut followed by another text's words after one: a text of the same group (its label)
    when `groups` is given, else any text. Texts that would come out empty are skipped.
    """
    words = [text.split() for text in texts]
    vocabulary = [w for ws in words for w in ws]
    keys = list(groups) if groups is not None else [""] * len(texts)  # one group: any partner
    partners = _partners(keys)
    out = []
    for _ in range(copies):
        for i, ws in enumerate(words):
            if splice and ws and rng.random() < splice:
                group = partners[keys[i]]
                other = words[group[rng.integers(len(group))]]
                new = ws[: rng.integers(1, len(ws) + 1)] + other[rng.integers(len(other) + 1) :]
                out.append(" ".join(new))
                continue
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


def _partners(groups: Sequence[str]) -> dict[str, list[int]]:
    """The row indices of each group."""
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    return members


def teacher_log_probs(teacher: Bundle, texts: Sequence[str], device: str = "cpu") -> np.ndarray:
    """Log-probabilities of the teacher: logits up to a per-row constant, in any bundle format."""
    probabilities = load_predictor(teacher, device=device).predict_proba(list(texts))
    return np.log(np.maximum(probabilities, 1e-30))


class LayerStates:
    """Records the mean-pooled output of each encoder layer of `model` on every forward call."""

    def __init__(self, model: FrugalTextClassifier):
        self.states: list[torch.Tensor] = []
        self.mask: torch.Tensor | None = None
        self.handles = [layer.register_forward_hook(self._hook) for layer in encoder_layers(model)]

    def _hook(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor | tuple) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        assert self.mask is not None, "set .mask to the batch's attention mask first"
        mask = self.mask.unsqueeze(-1).to(hidden.dtype)
        self.states.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))

    def take(self) -> list[torch.Tensor]:
        states, self.states = self.states, []
        return states

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@dataclass
class TeacherOutputs:
    log_probs: np.ndarray  # [texts, classes]
    states: torch.Tensor | None = None  # [texts, layers, hidden]: every layer's mean-pooled states
    # Per text [tokens, 3, width] (fp16, on the CPU): the last layer's queries, keys and values.
    projections: list[torch.Tensor] | None = None
    heads: int = 0  # the teacher's attention heads: the relation heads


@torch.inference_mode()
def teacher_outputs(
    teacher: Bundle,
    texts: Sequence[str],
    device: torch.device,
    states: bool = True,
    projections: bool = False,
) -> TeacherOutputs:
    """A PyTorch teacher's log-probabilities and, from the same pass over `texts`, the mean-pooled
    states of all its layers (`states`) and its last layer's queries, keys and values
    (`projections`)."""
    model, tokenizer = load_torch(teacher)
    model.eval().to(device)
    recorder = LayerStates(model) if states else None
    qkv = Projections(model) if projections else None
    ids = tokenize(tokenizer, texts, MAX_LENGTH)
    out = TeacherOutputs(np.empty((len(ids), len(teacher.labels)), dtype=np.float32))
    if recorder is not None:
        shape = (len(ids), len(encoder_layers(model)), model.encoder.config.hidden_size)
        out.states = torch.empty(shape, device=device)
    if qkv is not None:
        out.projections, out.heads = [torch.empty(0)] * len(ids), qkv.heads
    try:
        for index, batch in iterate_batches(ids, 64, tokenizer.pad_token_id):
            batch = {name: tensor.to(device) for name, tensor in batch.items()}
            if recorder is not None:
                recorder.mask = batch["attention_mask"]
            out.log_probs[index] = torch.log_softmax(model(**batch).logits.float(), -1).cpu().numpy()
            if recorder is not None and out.states is not None:
                out.states[torch.as_tensor(index, device=device)] = torch.stack(recorder.take(), 1).float()
            if qkv is not None and out.projections is not None:
                batch_qkv = qkv.take().half().cpu()
                for row, i in enumerate(index):  # each text's own tokens, not the batch's padding
                    out.projections[i] = batch_qkv[row, : len(ids[i])].clone()
    finally:
        for hooks in (recorder, qkv):
            if hooks is not None:
                hooks.close()
    return out


def teacher_targets(
    context: CompressContext,
    texts: Sequence[str],
    student_layers: int,
    device: torch.device,
    hidden: float,
    attention: float = 0.0,
) -> TeacherOutputs:
    """The teacher's log-probabilities and, with a PyTorch teacher (an ONNX one gives logits only),
    with `hidden` > 0 the states of the layers a student of `student_layers` layers was made from
    (prune.layer_indices), and with `attention` > 0 its last layer's projections. Kept on the
    context: the students of one search distil the same texts, so the teacher runs over them once."""
    torch_teacher = context.teacher.format == "torch"
    use_layers, use_attention = torch_teacher and hidden > 0, torch_teacher and attention > 0
    key = (hashlib.sha256("\0".join(texts).encode()).hexdigest(), use_layers, use_attention)
    if key not in context.teacher_outputs:
        context.teacher_outputs[key] = (
            teacher_outputs(context.teacher, texts, device, states=use_layers, projections=use_attention)
            if use_layers or use_attention
            else TeacherOutputs(teacher_log_probs(context.teacher, texts, context.device))
        )
    found: TeacherOutputs = context.teacher_outputs[key]
    if found.states is None:
        return found
    layers = layer_indices(found.states.shape[1], student_layers)
    return TeacherOutputs(found.log_probs, found.states[:, layers], found.projections, found.heads)


def layer_loss(student: list[torch.Tensor], teacher: torch.Tensor) -> torch.Tensor:
    """Mean over layers and rows of 1 - cosine(student layer, teacher layer)."""
    cosine = F.cosine_similarity(torch.stack(student, 1).float(), teacher, dim=-1)
    return (1 - cosine).mean()


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1 - alpha) * T^2 * KL(teacher_T || student_T) + alpha * CE on rows with a label (>= 0),
    the CE weighted by `class_weight` as the teacher's own training loss was."""
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
    hard = F.cross_entropy(student[labelled], labels[labelled], weight=class_weight)
    return (1 - alpha) * soft + alpha * hard


def teacher_class_weight(
    context: CompressContext, labels: Sequence[str], names: list[str]
) -> torch.Tensor | None:
    """The class weights the teacher was tuned with (its `class_weight` setting, on these labels):
    without them the student's hard-label loss pulls it towards the majority class."""
    weights = class_weights(list(labels), names, context.teacher.config.get("class_weight"))
    return None if weights is None else torch.tensor(weights, dtype=torch.float32)


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
    hidden: float = 1.0,
    attention: float = 0.0,
    splice: float = 0.0,
    splice_within: bool = False,
) -> Bundle:
    started = time.perf_counter()
    device = resolve_device(context.device)
    rng = np.random.default_rng(context.seed)
    torch.manual_seed(context.seed)
    model, tokenizer = load_torch(source)
    model.train().to(device)
    train = context.text_data
    index = {label: i for i, label in enumerate(source.labels)}
    groups = train.require_labels() if splice_within else None
    copies = augment(train.texts, augment_copies, rng, splice=splice, groups=groups)
    texts = [*train.texts, *context.unlabelled, *copies]
    labels = np.full(len(texts), -1)
    labels[: len(train)] = [index[y] for y in train.require_labels()]
    with context.reporter.task("teacher labels", None):
        teacher = teacher_targets(context, texts, len(encoder_layers(model)), device, hidden, attention)
    targets, teacher_states = torch.from_numpy(teacher.log_probs).to(device), teacher.states
    ids = tokenize(tokenizer, texts, MAX_LENGTH)
    lengths = [len(row) for row in ids]
    labels_t = torch.as_tensor(labels, device=device)
    class_weight = teacher_class_weight(context, train.require_labels(), source.labels)
    class_weight = None if class_weight is None else class_weight.to(device)

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
    recorder = LayerStates(model) if teacher_states is not None else None
    qkv = Projections(model) if teacher.projections is not None else None
    with context.reporter.task(f"distilling into {source.name}", total) as progress:
        for _ in range(epochs):
            for batch_index in length_batches(lengths, batch_size, rng):
                batch = {
                    name: tensor.to(device)
                    for name, tensor in collate([ids[i] for i in batch_index], tokenizer.pad_token_id).items()
                }
                if recorder is not None:
                    recorder.mask = batch["attention_mask"]
                with autocast(device):
                    logits = model(**batch).logits
                rows = torch.as_tensor(batch_index, device=device)
                loss = distillation_loss(
                    logits.float(), targets[rows], labels_t[rows], temperature, alpha, class_weight
                )
                if recorder is not None and teacher_states is not None:
                    loss = loss + hidden * layer_loss(recorder.take(), teacher_states[rows])
                if qkv is not None and teacher.projections is not None:
                    kept, mask = padded_projections(teacher.projections, batch_index, batch["attention_mask"])
                    loss = loss + attention * relation_loss(qkv.take(), kept, mask, teacher.heads)
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
    for hooks in (recorder, qkv):
        if hooks is not None:
            hooks.close()
    model.eval()
    check = sample_texts(train.texts, 512, context.seed)
    teacher_top = teacher_log_probs(context.teacher, check, context.device).argmax(1)
    metrics = {
        "distill_texts": len(texts),
        "distill_epochs": epochs,
        "distill_seconds": round(time.perf_counter() - started, 1),
        "final_loss": float(np.mean(losses[-50:])),
        # On training text; the search measures held-out text.
        "layer_distillation": teacher_states is not None,
        "attention_distillation": qkv is not None,
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
            "hidden": hidden,
            "attention": attention,
            "splice": splice,
            "splice_within": splice_within,
            "unlabelled": len(context.unlabelled),
        },
        metrics=metrics,
    )
