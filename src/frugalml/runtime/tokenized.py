"""Shared text path of the built-in predictors: tokenize a batch once, run it in length groups."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from frugalml.models.batching import collate, tokenize
from frugalml.runtime.grouping import padding_groups
from frugalml.runtime.predictor import softmax


class TokenizedPredictor:
    """Base of predictors whose model maps (input_ids, attention_mask) to logits.

    Subclasses set `labels`, `tokenizer`, `batch_size`, `max_length` and implement `logits`.
    `call_overhead` is one model call's fixed cost in padded-token units; it decides when
    splitting a batch into length groups pays (see `padding_groups`).
    """

    labels: list[str]
    tokenizer: PreTrainedTokenizerBase
    batch_size: int = 64
    max_length: int
    call_overhead: float = 32.0
    # A fast tokenizer is one Rust object: concurrent calls may fail with "Already borrowed".
    _tokenizer_lock = threading.Lock()

    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        with self._tokenizer_lock:
            ids = tokenize(self.tokenizer, texts, self.max_length)
        return softmax(self.token_logits(ids))

    def token_logits(self, ids: list[list[int]]) -> np.ndarray:
        """Logits of tokenized rows: one padded model call per length group."""
        out = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        pad = self.tokenizer.pad_token_id
        for index in padding_groups([len(row) for row in ids], self.batch_size, self.call_overhead):
            out[index] = self.logits(collate([ids[i] for i in index], pad))
        return out

    def warmup(self) -> None:
        # One lone text and one full batch: the shapes a server sees first.
        self.predict_proba(["warm up"])
        self.predict_proba(["warm up the model with a full batch"] * self.batch_size)
