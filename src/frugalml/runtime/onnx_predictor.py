"""ONNX Runtime predictor, with session options chosen for small-batch CPU serving; on a CUDA
device (`device`), ONNX Runtime's CUDA provider runs the graph."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import torch

from frugalml.bundle import Bundle
from frugalml.devices import CUDA_PROVIDER, onnx_providers, parse_device
from frugalml.errors import BundleError, FrugalError, first_line
from frugalml.models import load_bundle_config, load_bundle_tokenizer
from frugalml.models.batching import collate, usable_length
from frugalml.models.loading import highest_token_id
from frugalml.runtime.tokenized import TokenizedPredictor

ONNX_FILE = "model.onnx"


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    # Every request batch has a new (rows, width) shape: a memory plan per shape would be waste.
    options.enable_mem_pattern = False
    # No busy-waiting between calls: the event loop and the tokenizer need those cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def open_bundle_session(
    bundle: Bundle, device: str, providers: list[str | tuple[str, dict[str, str]]], threads: int | None
) -> ort.InferenceSession:
    """The bundle's model.onnx in ONNX Runtime with `providers` (onnx_providers(device)). ONNX
    Runtime falls back to the CPU when its CUDA provider cannot start (no GPU, no CUDA libraries):
    fine for auto, not for a GPU asked for by name."""
    assert bundle.path is not None
    try:
        session = ort.InferenceSession(
            str(bundle.path / ONNX_FILE), session_options(threads), providers=providers
        )
    except Exception as exc:  # ONNX Runtime raises its own untyped errors for bad graphs
        raise BundleError(f"bundle {bundle.id}: {ONNX_FILE} cannot be loaded ({first_line(exc)})") from None
    if device.startswith("cuda") and CUDA_PROVIDER not in session.get_providers():
        raise FrugalError(f"device {device!r} asked for, but ONNX Runtime could not start {CUDA_PROVIDER}")
    return session


class OnnxPredictor(TokenizedPredictor):
    call_overhead = 12.0  # ONNX Runtime calls are cheaper to launch than eager PyTorch's

    def __init__(
        self,
        bundle: Bundle,
        batch_size: int = 64,
        max_length: int | None = None,
        threads: int | None = None,
        device: str | None = "cpu",
    ):
        assert bundle.path is not None
        device = parse_device(device)
        providers = onnx_providers(device)  # first: a device this machine lacks loads nothing
        self.bundle = bundle
        self.labels = list(bundle.labels)
        self.batch_size = batch_size
        config = load_bundle_config(bundle)  # first: refuses a folder holding unlisted files
        self.tokenizer = load_bundle_tokenizer(bundle, config)
        self.max_length = usable_length(max_length, self.tokenizer, config.encoder)
        self.session = open_bundle_session(bundle, device, providers, threads)
        self._check_graph_embeds_every_token()

    def _check_graph_embeds_every_token(self) -> None:
        """The tokenizer was checked against the config's vocabulary size; this checks the graph."""
        highest = highest_token_id(self.tokenizer)
        feed = {name: t.numpy() for name, t in collate([[highest]], self.tokenizer.pad_token_id).items()}
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4  # fatal only: the refusal below is the one line the user sees
        try:
            self.session.run(["logits"], feed, quiet)
        except Exception as exc:  # ONNX Runtime raises its own untyped errors
            raise BundleError(
                f"bundle {self.bundle.id}: model.onnx cannot embed token id {highest}, which its "
                f"tokenizer produces ({first_line(exc)})"
            ) from None

    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        return self.session.run(["logits"], {name: tensor.numpy() for name, tensor in batch.items()})[0]
