"""MiniLMv2's self-attention relations (Wang et al. 2021), for attention distillation.

The relations of one layer are, for its queries, keys and values each, split into relation
heads, softmax(X X^T / sqrt(d)) over the text's tokens. They need no equal head count or width
between teacher and student, only the same tokens. compress/distill.py adds their KL divergence
to the loss when asked (`attention` > 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from frugalml.compress.prune import encoder_layers
from frugalml.models import FrugalTextClassifier


class Projections:
    """Records the query, key and value projections [batch, tokens, 3, width] of the last encoder
    layer of `model` on every forward call (the inputs of MiniLMv2's relations)."""

    NAMES = ("query", "key", "value")

    def __init__(self, model: FrugalTextClassifier):
        layer: Any = encoder_layers(model)[-1]
        attention = layer.attention.self  # BERT's self-attention: query, key and value Linears
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [
            getattr(attention, name).register_forward_hook(self._keep(name)) for name in self.NAMES
        ]
        self.heads = int(attention.num_attention_heads)

    def _keep(self, name: str):
        def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.outputs[name] = output

        return hook

    def take(self) -> torch.Tensor:
        return torch.stack([self.outputs.pop(name) for name in self.NAMES], 2)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def relations(projections: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """Log self-attention relations [batch, 3, heads, tokens, tokens] of projections [batch,
    tokens, 3, width]: per relation head, log_softmax(X X^T / sqrt(d)) over the unmasked tokens."""
    rows, tokens, kinds, width = projections.shape
    x = projections.float().view(rows, tokens, kinds, heads, width // heads).permute(0, 2, 3, 1, 4)
    scores = x @ x.transpose(-1, -2) / math.sqrt(width // heads)
    # A large finite negative, not -inf: padded keys then give exp() = 0 and no NaN in the KL.
    scores = scores.masked_fill(mask[:, None, None, None, :] == 0, -1e4)
    return scores.log_softmax(-1)


def relation_loss(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, heads: int
) -> torch.Tensor:
    """KL(teacher relations || student relations), summed over keys and averaged over the unmasked
    queries of every row, the relation heads and the three projections (MiniLMv2). A row whose
    mask is all zero does not count."""
    # Relation heads must split both widths; the teacher's head count does unless heads were pruned.
    heads = math.gcd(heads, student.shape[-1], teacher.shape[-1])
    kl = F.kl_div(
        relations(student, mask, heads), relations(teacher, mask, heads), log_target=True, reduction="none"
    )
    per_query = kl.sum(-1) * mask[:, None, None, :]
    return per_query.sum() / (mask.sum() * 3 * heads).clamp(min=1.0)


def padded_projections(
    kept: list[torch.Tensor], rows: Sequence[int] | np.ndarray, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's projections of `rows` padded to the student's batch [batch, tokens, 3, width],
    and the student's mask with zeros on rows whose teacher tokens differ in number."""
    lengths = mask.sum(1).tolist()
    width = kept[rows[0]].shape[-1]
    out = torch.zeros((len(rows), mask.shape[1], 3, width), device=mask.device)
    same = torch.zeros(len(rows), device=mask.device)
    for row, (i, length) in enumerate(zip(rows, lengths, strict=True)):
        if kept[i].shape[0] == length:
            out[row, :length] = kept[i].to(mask.device, torch.float32)
            same[row] = 1.0
    return out, mask * same[:, None].to(mask.dtype)
