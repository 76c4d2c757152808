"""Export a PyTorch bundle to an ONNX bundle (dynamic batch and sequence axes).

ONNX bundle contract, shared by every ONNX technique and the ONNX predictor:
`model.onnx` takes int64 `input_ids` and `attention_mask` of shape [batch, sequence] and returns
float `logits` of shape [batch, labels]; the tokenizer files and config.json sit beside it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from frugalml.bundle import Bundle, new_bundle_id, write_bundle
from frugalml.models import FrugalTextClassifier, FrugalTextClassifierConfig

ONNX_FILE = "model.onnx"
INPUTS = ("input_ids", "attention_mask")
CARRIED = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


class _LogitsOnly(torch.nn.Module):
    """The classifier as a function of (input_ids, attention_mask) -> logits."""

    def __init__(self, model: FrugalTextClassifier):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def export_model(model: FrugalTextClassifier, path: Path, opset: int = 18) -> Path:
    """Write `model` as an ONNX graph at `path` with dynamic batch and sequence axes."""
    model = model.eval()
    example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    batch, sequence = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=1, max=512)
    shapes = {name: {0: batch, 1: sequence} for name in INPUTS}
    with torch.no_grad():
        program = torch.onnx.export(
            _LogitsOnly(model),
            example,
            input_names=list(INPUTS),
            output_names=["logits"],
            dynamic_shapes=shapes,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(str(path), external_data=False)
    return path


def export_onnx(bundle: Bundle, store: Path, name: str | None = None) -> Bundle:
    """A new ONNX bundle from a PyTorch bundle; the source becomes its parent."""
    assert bundle.path is not None
    config = FrugalTextClassifierConfig.from_pretrained(bundle.path)
    model = FrugalTextClassifier.from_pretrained(bundle.path, config=config)

    def populate(folder: Path) -> None:
        with tempfile.TemporaryDirectory() as scratch:  # the exporter writes side files
            exported = export_model(model, Path(scratch) / ONNX_FILE)
            shutil.copy(exported, folder / ONNX_FILE)
        for file in CARRIED:
            if (bundle.path / file).exists():
                shutil.copy(bundle.path / file, folder / file)

    onnx_bundle = Bundle(
        id=new_bundle_id(),
        name=name or f"{bundle.name}-onnx",
        labels=bundle.labels,
        base_model=bundle.base_model,
        method=bundle.method,
        format="onnx",
        precision="fp32",
        metrics={},
        parents=[bundle.id],
        config={"technique": "onnx", "source": bundle.id},
    )
    return write_bundle(store, onnx_bundle, populate)
