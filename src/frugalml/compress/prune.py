"""Depth and width pruning of a BERT-style encoder.

Depth: keep k of the n encoder layers (evenly spaced, first and last kept), so the bundle is a
standard Hugging Face folder with fewer layers. Width: in every layer, the attention heads and
FFN neurons that contribute least on the domain's text are removed structurally. A Hugging Face
config holds one head count and one FFN width for all layers, so the PyTorch bundle keeps its
shapes with the pruned blocks zeroed; `remove_masked_structure` slices them out when the model is
exported, and distillation keeps them at zero while it trains.

Importance is measured, not guessed: a head's score is the mean norm of its contribution to the
attention output over the corpus's tokens; a neuron's is its mean absolute activation times the
norm of its output weights (plain functions over arrays below).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias, cast

import numpy as np
import torch
from torch import nn

from frugalml.bundle import Bundle
from frugalml.compress.checks import MAX_LENGTH, agreement, sample_texts, torch_logits
from frugalml.compress.context import CompressContext, derived_bundle, load_torch, save_torch
from frugalml.errors import FrugalError
from frugalml.models import FrugalTextClassifier
from frugalml.models.batching import iterate_batches, tokenize

# A BERT-style encoder layer (e.g. transformers' BertLayer), walked by attribute below. torch types
# every submodule attribute as `Tensor | Module`, so such chains are typed dynamically.
BertLayer: TypeAlias = Any


def head_scores(context: np.ndarray, weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Summed norm of each head's contribution to the attention output, over the rows of `context`.

    context: [tokens, n_heads * head_size], the concatenated head outputs;
    weight: [hidden, n_heads * head_size], the attention output projection.
    """
    size = context.shape[1] // n_heads
    return np.array(
        [
            np.linalg.norm(
                context[:, h * size : (h + 1) * size] @ weight[:, h * size : (h + 1) * size].T, axis=1
            ).sum()
            for h in range(n_heads)
        ]
    )


def neuron_scores(activations: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Summed |activation| of each FFN neuron times the norm of its output weights.

    activations: [tokens, ffn]; weight: [hidden, ffn], the FFN output projection.
    """
    return np.abs(activations).sum(0) * np.linalg.norm(weight, axis=0)


def keep_top(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the best `fraction` of `scores` (at least one), in ascending order."""
    count = max(1, round(fraction * len(scores)))
    return np.sort(np.argsort(-scores, kind="stable")[:count])


def layer_indices(n_layers: int, keep: int) -> list[int]:
    """`keep` of `n_layers` layer indices, evenly spaced, the first and last included."""
    if not 1 <= keep <= n_layers:
        raise FrugalError(f"cannot keep {keep} of {n_layers} encoder layers")
    return sorted({int(i) for i in np.round(np.linspace(0, n_layers - 1, keep))})


def encoder_layers(model: FrugalTextClassifier) -> nn.ModuleList:
    layers = getattr(getattr(model.encoder, "encoder", None), "layer", None)
    if layers is None or not hasattr(layers[0], "intermediate"):
        raise FrugalError(f"pruning supports BERT-style encoders; {type(model.encoder).__name__} is not one")
    return layers


def drop_layers(model: FrugalTextClassifier, keep: Sequence[int]) -> FrugalTextClassifier:
    """Keep only the encoder layers at indices `keep`, in place."""
    layers = encoder_layers(model)
    if not keep or any(not 0 <= i < len(layers) for i in keep):
        raise FrugalError(f"layer indices {list(keep)} out of range for {len(layers)} layers")
    model.encoder.encoder.layer = nn.ModuleList([layers[i] for i in keep])
    model.encoder.config.num_hidden_layers = len(keep)
    model.config.encoder = {**model.config.encoder, "num_hidden_layers": len(keep)}
    return model


@torch.inference_mode()
def importance(
    model: FrugalTextClassifier, tokenizer, texts: Sequence[str]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(head scores, neuron scores) per layer, from running `model` on `texts`."""
    layers = encoder_layers(model)
    n_heads = model.encoder.config.num_attention_heads
    totals: list[list[float | np.ndarray]] = [[0.0, 0.0] for _ in layers]
    mask: list[torch.Tensor] = []

    def recorder(index: int, kind: int, weight: torch.Tensor):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            rows = inputs[0][mask[0].bool()].float().numpy()  # real tokens only, not padding
            w = weight.detach().float().numpy()
            totals[index][kind] += head_scores(rows, w, n_heads) if kind == 0 else neuron_scores(rows, w)

        return hook

    handles = []
    layer: BertLayer
    for i, layer in enumerate(layers):
        attention_out, ffn_out = layer.attention.output.dense, layer.output.dense
        handles.append(attention_out.register_forward_pre_hook(recorder(i, 0, attention_out.weight)))
        handles.append(ffn_out.register_forward_pre_hook(recorder(i, 1, ffn_out.weight)))
    was_training = model.training
    model.eval()
    try:
        ids = tokenize(tokenizer, texts, MAX_LENGTH)
        for _, batch in iterate_batches(ids, 32, tokenizer.pad_token_id):
            mask[:] = [batch["attention_mask"]]
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [(np.asarray(h), np.asarray(f)) for h, f in totals]


def head_size(layer: BertLayer) -> int:
    attention = layer.attention.self
    return attention.query.out_features // attention.num_attention_heads


def mask_heads(layer: BertLayer, heads: Sequence[int]) -> None:
    """Zero the given heads' query/key/value rows and output-projection columns."""
    size, attention = head_size(layer), layer.attention.self
    with torch.no_grad():
        for h in heads:
            block = slice(h * size, (h + 1) * size)
            for linear in (attention.query, attention.key, attention.value):
                linear.weight[block] = 0
                linear.bias[block] = 0
            layer.attention.output.dense.weight[:, block] = 0


def mask_neurons(layer: BertLayer, neurons: Sequence[int]) -> None:
    """Zero the given FFN neurons' input rows, biases and output columns."""
    index = torch.as_tensor(list(neurons), dtype=torch.long)
    with torch.no_grad():
        layer.intermediate.dense.weight[index] = 0
        layer.intermediate.dense.bias[index] = 0
        layer.output.dense.weight[:, index] = 0


def live_heads(layer: BertLayer) -> list[int]:
    """Heads whose output-projection columns are not all zero."""
    size, n = head_size(layer), layer.attention.self.num_attention_heads
    weight = layer.attention.output.dense.weight
    return [h for h in range(n) if weight[:, h * size : (h + 1) * size].abs().sum() > 0]


def head_counts(model: FrugalTextClassifier) -> set[int]:
    """The distinct attention-head counts of the encoder's layers (empty if not BERT-style)."""
    try:
        return {
            layer.attention.self.num_attention_heads
            for layer in cast("Iterable[BertLayer]", encoder_layers(model))
        }
    except FrugalError:
        return set()


def live_neurons(layer: BertLayer) -> list[int]:
    return torch.nonzero(layer.output.dense.weight.abs().sum(0) > 0).flatten().tolist()


def pruned_entries(model: FrugalTextClassifier) -> list[tuple[torch.Tensor, tuple]]:
    """(parameter, index) of every block width pruning zeroed: training must keep them at zero."""
    try:
        layers = encoder_layers(model)
    except FrugalError:
        return []
    entries: list[tuple[torch.Tensor, tuple]] = []
    layer: BertLayer
    for layer in layers:
        size, attention = head_size(layer), layer.attention.self
        heads = set(live_heads(layer))
        rows = [
            i
            for h in range(attention.num_attention_heads)
            if h not in heads
            for i in range(h * size, (h + 1) * size)
        ]
        if rows:
            index = torch.as_tensor(rows)
            for linear in (attention.query, attention.key, attention.value):
                entries += [(linear.weight, (index,)), (linear.bias, (index,))]
            entries.append((layer.attention.output.dense.weight, (slice(None), index)))
        neurons = sorted(set(range(layer.output.dense.in_features)) - set(live_neurons(layer)))
        if neurons:
            index = torch.as_tensor(neurons)
            entries += [
                (layer.intermediate.dense.weight, (index,)),
                (layer.intermediate.dense.bias, (index,)),
                (layer.output.dense.weight, (slice(None), index)),
            ]
    return entries


def rezero(entries: list[tuple[torch.Tensor, tuple]]) -> None:
    with torch.no_grad():
        for parameter, index in entries:
            parameter[index] = 0


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of `linear` keeping only output rows (dim 0) or input columns (dim 1) in `index`."""
    weight = linear.weight.detach().index_select(dim, index)
    smaller = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None)
    with torch.no_grad():
        smaller.weight.copy_(weight)
        if linear.bias is not None:
            smaller.bias.copy_(linear.bias.detach() if dim == 1 else linear.bias.detach()[index])
    return smaller


def remove_masked_structure(model: FrugalTextClassifier) -> FrugalTextClassifier:
    """A copy of `model` with zeroed heads and FFN neurons sliced out (the same function, smaller)."""
    sliced = copy.deepcopy(model)
    try:
        layers = encoder_layers(sliced)
    except FrugalError:
        return sliced  # not BERT-style: nothing pruning could have zeroed
    layer: BertLayer
    for layer in layers:
        size, attention = head_size(layer), layer.attention.self
        heads = live_heads(layer)
        if len(heads) < attention.num_attention_heads:
            rows = torch.as_tensor([i for h in heads for i in range(h * size, (h + 1) * size)])
            for name in ("query", "key", "value"):
                setattr(attention, name, _slice_linear(getattr(attention, name), rows, 0))
            layer.attention.output.dense = _slice_linear(layer.attention.output.dense, rows, 1)
            attention.num_attention_heads = len(heads)
            attention.all_head_size = len(heads) * size
        neurons = live_neurons(layer)
        if len(neurons) < layer.output.dense.in_features:
            index = torch.as_tensor(neurons)
            layer.intermediate.dense = _slice_linear(layer.intermediate.dense, index, 0)
            layer.output.dense = _slice_linear(layer.output.dense, index, 1)
    return sliced


def prune_model(
    model: FrugalTextClassifier,
    tokenizer,
    texts: Sequence[str],
    layers: int | Sequence[int] | None = None,
    heads: float = 1.0,
    ffn: float = 1.0,
) -> FrugalTextClassifier:
    """Drop layers, then zero the least important heads and FFN neurons of each kept layer."""
    if not (0 < heads <= 1 and 0 < ffn <= 1):
        raise FrugalError(f"heads and ffn are fractions to keep, in (0, 1]; got {heads} and {ffn}")
    n_layers = len(encoder_layers(model))
    if layers is not None:
        keep = layer_indices(n_layers, layers) if isinstance(layers, int) else list(layers)
        drop_layers(model, keep)
    if heads < 1 or ffn < 1:
        for layer, (head_score, neuron_score) in zip(
            encoder_layers(model), importance(model, tokenizer, texts), strict=True
        ):
            mask_heads(layer, sorted(set(range(len(head_score))) - set(keep_top(head_score, heads).tolist())))
            mask_neurons(
                layer, sorted(set(range(len(neuron_score))) - set(keep_top(neuron_score, ffn).tolist()))
            )
    return model


def effective_parameters(model: FrugalTextClassifier) -> int:
    """Parameters left once zeroed structure is sliced out."""
    return sum(p.numel() for p in remove_masked_structure(model).parameters())


def prune(
    source: Bundle,
    context: CompressContext,
    layers: int | list[int] | None = None,
    heads: float = 1.0,
    ffn: float = 1.0,
    importance_texts: int = 512,
    check_texts: int = 256,
) -> Bundle:
    model, tokenizer = load_torch(source)
    before = effective_parameters(model)
    check = sample_texts(context.corpus, check_texts, context.seed)
    reference = torch_logits(model, tokenizer, check)
    prune_model(
        model,
        tokenizer,
        sample_texts(context.text_data.texts, importance_texts, context.seed + 2),
        layers,
        heads,
        ffn,
    )
    metrics = {
        "parameters_before": before,
        "parameters": effective_parameters(model),
        "layers": len(encoder_layers(model)),
        # Before distillation: how much of the teacher's behaviour pruning alone kept.
        **agreement(reference, torch_logits(model, tokenizer, check)),
    }
    populate = save_torch(model, tokenizer)
    return derived_bundle(
        source,
        "prune",
        populate,
        context.store,
        format="torch",
        precision=source.precision,
        options={"layers": layers, "heads": heads, "ffn": ffn},
        metrics=metrics,
    )
