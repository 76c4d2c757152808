"""Does a compressed model still agree with its source? Logits on the domain's own text.

Every technique checks its output against its input before the new bundle is written, and
records the agreement in the new bundle's metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from transformers import PreTrainedTokenizerBase

from frugalml.errors import BundleError
from frugalml.models.batching import iterate_batches, run_model, tokenize
from frugalml.runtime.onnx_predictor import session_options

MAX_LENGTH = 128  # the predictors' default


def sample_texts(texts: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """Up to `n` texts drawn without replacement, in a seeded order."""
    order = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in order]


def torch_logits(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]
) -> np.ndarray:
    return run_model(model, tokenize(tokenizer, texts, MAX_LENGTH), tokenizer.pad_token_id)


def open_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session, or a BundleError that says the file is not a usable model."""
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own untyped errors for bad graphs
        raise BundleError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None


def onnx_logits(path: Path, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> np.ndarray:
    session = open_session(path)
    ids = tokenize(tokenizer, texts, MAX_LENGTH)
    out: np.ndarray | None = None
    for index, batch in iterate_batches(ids, 64, tokenizer.pad_token_id):
        logits = session.run(["logits"], {name: tensor.numpy() for name, tensor in batch.items()})[0]
        if out is None:
            out = np.empty((len(ids), logits.shape[1]), dtype=np.float32)
        out[index] = logits
    assert out is not None, "no texts to run"
    return out


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """How closely `candidate` logits follow `reference` logits, row by row.

    agreement: share of rows with the same top class; min_cosine: the worst row's cosine
    similarity; max_abs_diff: the largest absolute difference of any logit.
    """
    cosine = (reference * candidate).sum(1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1) + 1e-12
    )
    return {
        "agreement": float((reference.argmax(1) == candidate.argmax(1)).mean()),
        "min_cosine": float(cosine.min()),
        "max_abs_diff": float(np.abs(reference - candidate).max()),
    }
