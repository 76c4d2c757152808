"""Export a PyTorch bundle to an ONNX bundle, fused by ONNX Runtime's transformer optimizer.

ONNX bundle contract, shared by every ONNX technique and the ONNX predictor:
`model.onnx` takes int64 `input_ids` and `attention_mask` of shape [batch, sequence] and returns
float `logits` of shape [batch, labels]; the tokenizer files and config.json sit beside it.

Bundles hold merged weights (LoRA adapters are folded in when tuning ends), so the exported graph
is the plain encoder. The TorchScript exporter with eager attention emits the graph patterns that
ONNX Runtime's BERT fusions recognize (Attention, SkipLayerNormalization, EmbedLayerNormalization,
BiasGelu); a dynamo-exported graph fuses none of them and also takes ten times longer to export.
Heads and FFN neurons that pruning zeroed are sliced out before export, so the dense kernels
shrink with them.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from frugalml.bundle import Bundle
from frugalml.compress.checks import agreement, onnx_logits, sample_texts, torch_logits
from frugalml.compress.context import CompressContext, derived_bundle, load_torch
from frugalml.compress.prune import head_counts, remove_masked_structure
from frugalml.errors import FrugalError
from frugalml.models import FrugalTextClassifier
from frugalml.models.batching import PositionalLogits

ONNX_FILE = "model.onnx"
INPUTS = ("input_ids", "attention_mask")
# config.json names hf_model.py in its auto_map: the code AutoConfig needs to read the config.
CARRIED = (
    "config.json",
    "hf_model.py",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
# Used to check an export when no domain text is at hand.
PROBE_TEXTS = (
    "I still have not received my new card, can you check where it is?",
    "how do I reset my password",
    "refund please",
    "Why was I charged twice for the same purchase yesterday evening?",
)
MAX_ABS_DIFF = 1e-3  # fp32 export: fused kernels reorder sums, nothing more


def export_model(model: FrugalTextClassifier, path: Path, opset: int = 17) -> dict[str, int]:
    """Write `model` as a fused ONNX graph at `path`; returns the count of each fused operator."""
    from onnxruntime.transformers.optimizer import optimize_model

    sliced = remove_masked_structure(model)  # a copy: `model` is left as it was
    sliced.encoder.set_attn_implementation("eager")
    example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS} | {"logits": {0: "batch"}}
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about Python control flow in transformers
        raw = Path(scratch) / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                PositionalLogits(sliced),
                example,
                str(raw),
                input_names=list(INPUTS),
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        counts = head_counts(sliced)
        # Attention fusion needs the one head count all layers share (0: let it try to detect one).
        num_heads = counts.pop() if len(counts) == 1 else 0
        size = sliced.encoder.config.hidden_size // sliced.encoder.config.num_attention_heads
        optimized = optimize_model(
            str(raw), model_type="bert", num_heads=num_heads, hidden_size=num_heads * size
        )
        optimized.save_model_to_file(str(path))
    return {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}


def copy_companions(source: Path, target: Path) -> None:
    """Copy the tokenizer and config files an ONNX bundle carries beside its graph."""
    for name in CARRIED:
        if (source / name).exists():
            shutil.copy(source / name, target / name)


def export_onnx(
    bundle: Bundle, store: Path, name: str | None = None, check_texts: Sequence[str] = PROBE_TEXTS
) -> Bundle:
    """A new ONNX bundle from a PyTorch bundle (the source becomes its parent).

    The exported graph must give the same logits as the PyTorch model on `check_texts`.
    """
    assert bundle.path is not None
    source_path = bundle.path
    model, tokenizer = load_torch(bundle)
    texts = list(check_texts)
    reference = torch_logits(model, tokenizer, texts)
    metrics: dict = {}

    def populate(folder: Path) -> None:
        fused = export_model(model, folder / ONNX_FILE)
        copy_companions(source_path, folder)
        metrics.update(agreement(reference, onnx_logits(folder / ONNX_FILE, tokenizer, texts)))
        if metrics["max_abs_diff"] > MAX_ABS_DIFF:
            raise FrugalError(f"the exported ONNX graph does not match the PyTorch model ({metrics})")
        metrics["fused_ops"] = fused

    return derived_bundle(
        bundle, "onnx", populate, store, format="onnx", precision=bundle.precision, metrics=metrics, name=name
    )


def onnx_technique(source: Bundle, context: CompressContext, check_texts: int = 256) -> Bundle:
    return export_onnx(
        source, context.store, check_texts=sample_texts(context.corpus, check_texts, context.seed)
    )
