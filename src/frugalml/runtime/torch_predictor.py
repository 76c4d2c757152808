"""PyTorch predictor over a bundle's Hugging Face folder (or a model still in memory)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from frugalml.bundle import Bundle
from frugalml.models import FrugalTextClassifier, FrugalTextClassifierConfig
from frugalml.models.batching import run_model, tokenize
from frugalml.runtime.predictor import register_format, softmax


class TorchPredictor:
    def __init__(
        self,
        model: FrugalTextClassifier,
        tokenizer: PreTrainedTokenizerBase,
        labels: Sequence[str],
        bundle: Bundle | None = None,
        batch_size: int = 64,
        max_length: int = 128,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.bundle = bundle
        self.batch_size = batch_size
        self.max_length = max_length

    @classmethod
    def from_bundle(cls, bundle: Bundle, threads: int | None = None, **options) -> TorchPredictor:
        assert bundle.path is not None
        if threads:
            torch.set_num_threads(threads)
        config = FrugalTextClassifierConfig.from_pretrained(bundle.path)
        model = FrugalTextClassifier.from_pretrained(bundle.path, config=config)
        tokenizer = AutoTokenizer.from_pretrained(bundle.path)
        return cls(model, tokenizer, bundle.labels, bundle=bundle, **options)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        ids = tokenize(self.tokenizer, texts, self.max_length)
        logits = run_model(self.model, ids, self.tokenizer.pad_token_id, self.batch_size)
        return softmax(logits)

    def warmup(self) -> None:
        self.predict_proba(["warm up"] * 2)


register_format("torch", TorchPredictor.from_bundle)
