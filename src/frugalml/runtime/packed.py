"""Padding-free forward of a BERT classifier (MiniLM among them): a batch's tokens as one matrix.

On short texts a small encoder's work is nearly all linear layers (MiniLM on 16 tokens: attention
is under 1 % of the multiply-adds), and on a padded batch they run on the padding too (16 random
BANKING77 queries: half the positions). Packed, they run on real tokens only, and a whole batch is
one model call instead of one per length group. Only attention needs each text's tokens side by
side: it runs on padded [texts, longest, ...] grids, scattered from and gathered back to the rows.
One grid for the whole batch would be as wide as its longest text, and short queries have a long
tail of longer ones; so the texts are cut into GRID_GROUPS groups of like length, a grid each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from frugalml.models import FrugalTextClassifier
from frugalml.runtime.grouping import grid_groups

# Attention grids per packed call: each saves padding and costs one more attention call per layer
# (bench/serve.py measures the model alone with one, two and three).
GRID_GROUPS = 2


def packable(model: FrugalTextClassifier) -> bool:
    """Whether `model`'s encoder is a BERT encoder (MiniLM among them), whose forward
    PackedClassifier reproduces; a BERT decoder's causal mask it does not, nor a soft prompt or prefix."""
    config = model.encoder.config
    extended = model.config.prompt_length or model.config.prefix_length
    return config.model_type == "bert" and not config.is_decoder and not extended


class PackedClassifier(torch.nn.Module):
    """The classifier's logits from `pack`'s tensors, with the model's own weights (not copied),
    one row per text in the order `pack` was given them."""

    def __init__(self, model: FrugalTextClassifier):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        rows: torch.Tensor,
        lengths: torch.Tensor,
        *grids: torch.Tensor,
    ) -> torch.Tensor:
        embeddings = self.model.encoder.embeddings
        states = embeddings.LayerNorm(
            embeddings.word_embeddings(input_ids)
            + embeddings.position_embeddings(positions)
            + embeddings.token_type_embeddings.weight[0]  # one segment: the model is fed no type ids
        )
        hidden = states.shape[1]
        groups = list(zip(grids[0::2], grids[1::2], strict=True))  # (slots, mask) per grid
        for layer in self.model.encoder.encoder.layer:
            attention = layer.attention.self
            heads = attention.num_attention_heads  # per layer: pruning may leave layers uneven
            projected = [
                projection(states) for projection in (attention.query, attention.key, attention.value)
            ]
            contexts, start = [], 0
            for slots, mask in groups:  # the tokens of one grid's texts, one after another
                tokens = slots.shape[0]
                query, key, value = (_grid(x.narrow(0, start, tokens), slots, mask, heads) for x in projected)
                context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask[:, None, None, :])
                grid_shape = (mask.shape[0] * mask.shape[1], context.shape[1] * context.shape[3])
                contexts.append(context.transpose(1, 2).reshape(grid_shape).index_select(0, slots))
                start = start + tokens
            output = layer.attention.output
            states = output.LayerNorm(output.dense(torch.cat(contexts)) + states)
            inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(states))
            states = layer.output.LayerNorm(layer.output.dense(inner) + states)
        # Mean pooling, as FrugalTextClassifier.pool: a sum per text over its tokens only.
        pooled = states.new_zeros(lengths.shape[0], hidden).index_add(0, rows, states)
        pooled = pooled / lengths[:, None].to(states.dtype)
        if self.model.config.normalize:
            pooled = F.normalize(pooled, dim=-1)
        return self.model.classifier(pooled)


def _grid(values: torch.Tensor, slots: torch.Tensor, mask: torch.Tensor, heads: int) -> torch.Tensor:
    """[tokens, width] -> [texts, heads, longest, width / heads], zeros where a text has ended."""
    (texts, longest), width = mask.shape, values.shape[1]
    grid = values.new_zeros(texts * longest, width).index_copy(0, slots, values)
    return grid.view(texts, longest, heads, width // heads).transpose(1, 2)


def pack(token_ids: Sequence[Sequence[int]], groups: int = GRID_GROUPS) -> dict[str, torch.Tensor]:
    """PackedClassifier's inputs, in its order, for tokenized texts: each token's id, position and
    text; each text's length; then per grid (`grid_groups` of the lengths), its tokens' slots in
    its texts x longest grid and the grid's mask of real tokens. Tokens come grid by grid."""
    lengths = np.array([len(ids) for ids in token_ids])
    parts = grid_groups(lengths, groups)
    order = np.concatenate(parts)
    positions = np.concatenate([np.arange(lengths[i]) for i in order])
    inputs = {
        "input_ids": torch.tensor([token for i in order for token in token_ids[i]], dtype=torch.long),
        "positions": torch.from_numpy(positions),
        "rows": torch.from_numpy(np.repeat(order, lengths[order])),
        "lengths": torch.from_numpy(lengths),
    }
    start = 0
    for number, part in enumerate(parts):
        sizes = lengths[part]
        longest = sizes.max(initial=1)  # an empty grid: one column, no rows
        rows_in_grid = np.repeat(np.arange(len(part)), sizes)
        end = start + len(rows_in_grid)
        inputs[f"slots_{number}"] = torch.from_numpy(rows_in_grid * longest + positions[start:end])
        inputs[f"mask_{number}"] = torch.from_numpy(np.arange(longest)[None, :] < sizes[:, None])
        start = end
    return inputs
