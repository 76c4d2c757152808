"""PyTorch predictor over a bundle's Hugging Face folder (or a model still in memory)."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from frugalml.bundle import Bundle
from frugalml.devices import autocast, resolve_device
from frugalml.models import FrugalTextClassifier, load_bundle_torch
from frugalml.models.batching import PositionalLogits, collate, length_batches, tokenize, usable_length
from frugalml.runtime.cpu import Neighbours
from frugalml.runtime.packed import GRID_GROUPS, PackedClassifier, pack, packable
from frugalml.runtime.tokenized import TokenizedPredictor

log = logging.getLogger("frugalml.runtime")

# Traced on texts of several lengths, so the masked path is the one recorded and each of the
# packed trace's grids holds texts; checked on other shapes, since tracing silently bakes in any
# shape-dependent Python branch.
TRACE_EXAMPLE = ["a short one", "a somewhat longer text to pad the other row", "hi", "a fourth, middling one"]
TRACE_CHECK = ["one", "two words", "and a third text, longer than both of them"]


class TorchPredictor(TokenizedPredictor):
    """`jit=True` runs a frozen TorchScript trace of the model (checked against eager at load):
    one call into C++ per batch instead of Python between every operation, which is faster
    and, in a server, leaves the GIL to the event loop for the whole call. A BERT encoder (MiniLM
    among them) is also traced packed, free of padding (frugalml.runtime.packed), for batches of
    several texts; a lone text and other encoders run the padded trace, per length group.

    `lone_threads`: intra-op threads for a call that finds no other call running (a lone request
    on an idle server), where the usual per-call count (set at load) would leave cores idle; cut to
    the cores other processes have lately left free (`neighbours`), never below the usual count.
    `grids`: attention grids per packed call (frugalml.runtime.packed).
    `device`: where the model runs (frugalml.devices; None: where its weights already are), in
    mixed precision where the device has it. Traces are for the CPU, where they save the Python
    between operations; on a GPU the eager model runs under autocast instead.
    """

    def __init__(
        self,
        model: FrugalTextClassifier,
        tokenizer: PreTrainedTokenizerBase,
        labels: Sequence[str],
        bundle: Bundle | None = None,
        batch_size: int = 64,
        max_length: int | None = None,  # None: the length the bundle was tuned with
        jit: bool = False,
        lone_threads: int | None = None,
        grids: int = GRID_GROUPS,
        device: torch.device | str | None = None,
    ):
        self.device = next(model.parameters()).device if device is None else resolve_device(str(device))
        self.model = model.eval().to(self.device)
        jit = jit and self.device.type == "cpu"
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.bundle = bundle
        self.batch_size = batch_size
        self.max_length = usable_length(max_length, tokenizer, model.config.encoder)
        if grids < 1:
            raise ValueError(f"grids must be at least 1, not {grids}")
        self.grids = grids
        self.padded_trace = self._trace(packed=False) if jit else None
        self.packed_trace = self._trace(packed=True) if jit and packable(self.model) else None
        self.threads = torch.get_num_threads()
        self.lone_threads = lone_threads
        self.neighbours = Neighbours()
        self._running = 0
        self._running_lock = threading.Lock()

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, threads: int | None = None, device: str | None = "cpu", **options
    ) -> TorchPredictor:
        assert bundle.path is not None
        placed = resolve_device(device)  # first: a device this machine lacks loads nothing
        if threads:
            # Process-wide in PyTorch: threads per model call, whichever thread makes the call.
            torch.set_num_threads(threads)
        model, tokenizer = load_bundle_torch(bundle)
        return cls(model, tokenizer, bundle.labels, bundle=bundle, device=placed, **options)

    @torch.inference_mode()
    def _trace(self, packed: bool) -> torch.jit.ScriptModule | None:
        """The model traced padded (inputs as `logits` takes them) or packed (as `pack` makes
        them); None where tracing fails or the trace disagrees with eager."""
        module: torch.nn.Module
        if packed:
            module, inputs = PackedClassifier(self.model), self._packed_inputs
        else:
            module, inputs = PositionalLogits(self.model), self._padded_inputs
        name = "packed" if packed else "padded"
        try:
            expected = self.model(**self._padded_inputs(TRACE_CHECK)).logits
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.freeze(
                    torch.jit.trace(module.eval(), tuple(inputs(TRACE_EXAMPLE).values()))
                )
            if torch.allclose(traced(*inputs(TRACE_CHECK).values()), expected, atol=1e-4):
                return traced
            log.warning("the %s trace disagrees with the eager model; not used", name)
        except Exception as exc:  # a model tracing cannot capture still serves, only slower
            log.warning("the model cannot be traced %s (%s); not used", name, exc)
        return None

    def _padded_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return collate(tokenize(self.tokenizer, texts, self.max_length), self.tokenizer.pad_token_id)

    def _packed_inputs(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return pack(tokenize(self.tokenizer, texts, self.max_length), self.grids)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not self.lone_threads or self.lone_threads == self.threads:
            return super().predict_proba(texts)
        with self._running_lock:
            self._running += 1
            alone = self._running == 1
        # PyTorch keeps the intra-op thread count per calling thread once set there, so this
        # call's count does not change a call running beside it on another thread.
        torch.set_num_threads(self._threads_alone() if alone else self.threads)
        try:
            return super().predict_proba(texts)
        finally:
            with self._running_lock:
                self._running -= 1

    def _threads_alone(self) -> int:
        """`lone_threads`, cut to the cores other processes have lately left free. Each operation
        of a call ends when its last intra-op thread does: a thread that finds no free core (a
        CPU-heavy process beside the server) holds the whole call up at every operation
        (bench/serve.py --noisy)."""
        assert self.lone_threads is not None
        busy = self.neighbours.busy_cores()
        if busy is None:
            return self.lone_threads
        free = round((os.cpu_count() or 1) - busy)
        return max(self.threads, min(self.lone_threads, free))

    @torch.inference_mode()
    def token_logits(self, ids: list[list[int]]) -> np.ndarray:
        if self.packed_trace is None or len(ids) <= 1:  # one text has no padding to save
            return super().token_logits(ids)
        # One call per batch_size rows, in length order: attention runs on texts x longest grids,
        # so rows of like length share a call.
        out = np.empty((len(ids), len(self.labels)), dtype=np.float32)
        for index in length_batches([len(row) for row in ids], self.batch_size):
            inputs = pack([ids[i] for i in index], self.grids)
            out[index] = self.packed_trace(*inputs.values()).float().numpy()
        return out

    @torch.inference_mode()
    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        if self.padded_trace is not None:
            return self.padded_trace(batch["input_ids"], batch["attention_mask"]).float().numpy()
        with autocast(self.device):
            logits = self.model(**{name: tensor.to(self.device) for name, tensor in batch.items()}).logits
        return logits.float().cpu().numpy()
