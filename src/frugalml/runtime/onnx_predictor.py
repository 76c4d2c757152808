"""ONNX Runtime predictor, with session options chosen for small-batch CPU serving."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
from transformers import AutoTokenizer

from frugalml.bundle import Bundle
from frugalml.errors import BundleError
from frugalml.models.batching import iterate_batches, tokenize
from frugalml.runtime.predictor import register_format, softmax


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    # No busy-waiting between batches: idle servers should not burn the CPU they share.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxPredictor:
    def __init__(
        self, bundle: Bundle, batch_size: int = 64, max_length: int = 128, threads: int | None = None
    ):
        assert bundle.path is not None
        self.bundle = bundle
        self.labels = list(bundle.labels)
        self.batch_size = batch_size
        self.max_length = max_length
        try:
            self.session = ort.InferenceSession(
                str(bundle.path / "model.onnx"), session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ONNX Runtime raises its own untyped errors for bad graphs
            raise BundleError(f"bundle {bundle.id}: model.onnx cannot be loaded ({exc})") from None
        self.tokenizer = AutoTokenizer.from_pretrained(bundle.path)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        ids = tokenize(self.tokenizer, texts, self.max_length)
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for index, batch in iterate_batches(ids, self.batch_size, self.tokenizer.pad_token_id):
            feeds = {name: tensor.numpy() for name, tensor in batch.items()}
            out[index] = self.session.run(["logits"], feeds)[0]
        return softmax(out)

    def warmup(self) -> None:
        self.predict_proba(["warm up"] * 2)


register_format("onnx", OnnxPredictor)
