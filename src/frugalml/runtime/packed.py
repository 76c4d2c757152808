"""Padding-free forward of a BERT classifier (MiniLM among them): a batch's tokens as one matrix.

On short texts a small encoder's work is nearly all linear layers (MiniLM on 16 tokens: attention
is under 1 % of the multiply-adds), and on a padded batch they run on the padding too (16 random
BANKING77 queries: half the positions). Packed, they run on real tokens only, and a whole batch is
one model call instead of one per length group. Only attention needs each text's tokens side by
side: it runs on a padded [texts, longest, ...] grid, scattered from and gathered back to the rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from frugalml.models import FrugalTextClassifier


def packable(model: FrugalTextClassifier) -> bool:
    """Whether `model`'s encoder is a BERT encoder (MiniLM among them), whose forward
    PackedClassifier reproduces; a BERT decoder's causal mask it does not."""
    config = model.encoder.config
    return config.model_type == "bert" and not config.is_decoder


class PackedClassifier(torch.nn.Module):
    """The classifier's logits from `pack`'s tensors, with the model's own weights (not copied)."""

    def __init__(self, model: FrugalTextClassifier):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        rows: torch.Tensor,
        slots: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        embeddings = self.model.encoder.embeddings
        states = embeddings.LayerNorm(
            embeddings.word_embeddings(input_ids)
            + embeddings.position_embeddings(positions)
            + embeddings.token_type_embeddings.weight[0]  # one segment: the model is fed no type ids
        )
        texts, longest, hidden = mask.shape[0], mask.shape[1], states.shape[1]
        keys_mask = mask[:, None, None, :]
        for layer in self.model.encoder.encoder.layer:
            attention = layer.attention.self
            heads = attention.num_attention_heads  # per layer: pruning may leave layers uneven
            query, key, value = (
                _grid(projection(states), slots, texts, longest, heads)
                for projection in (attention.query, attention.key, attention.value)
            )
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=keys_mask)
            context = context.transpose(1, 2).reshape(texts * longest, -1).index_select(0, slots)
            output = layer.attention.output
            states = output.LayerNorm(output.dense(context) + states)
            inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(states))
            states = layer.output.LayerNorm(layer.output.dense(inner) + states)
        # Mean pooling, as FrugalTextClassifier.pool: a sum per text over its tokens only.
        pooled = states.new_zeros(texts, hidden).index_add(0, rows, states)
        pooled = pooled / mask.sum(1, keepdim=True).to(states.dtype)
        if self.model.config.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return self.model.classifier(pooled)


def _grid(values: torch.Tensor, slots: torch.Tensor, texts: int, longest: int, heads: int) -> torch.Tensor:
    """[tokens, width] -> [texts, heads, longest, width / heads], zeros where a text has ended."""
    width = values.shape[1]
    grid = values.new_zeros(texts * longest, width).index_copy(0, slots, values)
    return grid.view(texts, longest, heads, width // heads).transpose(1, 2)


def pack(token_ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """PackedClassifier's inputs, in its order, for tokenized texts: each token's id, position and
    text; its slot in the texts x longest grid; and the grid's mask of real tokens."""
    lengths = torch.tensor([len(ids) for ids in token_ids])
    longest = int(lengths.max())
    positions = torch.cat([torch.arange(n) for n in lengths.tolist()])
    rows = torch.repeat_interleave(torch.arange(len(token_ids)), lengths)
    return {
        "input_ids": torch.tensor([token for ids in token_ids for token in ids], dtype=torch.long),
        "positions": positions,
        "rows": rows,
        "slots": rows * longest + positions,
        "mask": torch.arange(longest)[None, :] < lengths[:, None],
    }
