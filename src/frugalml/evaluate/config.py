"""Evaluation settings: the only copy of each default, checked where they are built."""

from __future__ import annotations

from dataclasses import dataclass

from frugalml.devices import parse_device
from frugalml.errors import check_ranges
from frugalml.evaluate.perturb import parse_spec


@dataclass
class EvalConfig:
    # Texts per model call. Scores can depend on it: dynamic int8 quantizes each call's
    # activations with the call's own range.
    batch_size: int = 64
    device: str = "auto"  # where the model runs (frugalml.devices); a placement, not an input
    # Also score on noisy copies of the texts: "typos[:RATE]" or "words[:RATE]" (evaluate/perturb.py).
    perturb: str | None = None
    perturb_seed: int = 0

    def __post_init__(self):
        self.device = parse_device(self.device)
        if self.perturb is not None:
            parse_spec(self.perturb)
        checks = {
            "batch_size": (self.batch_size >= 1, "batch_size >= 1"),
            "perturb_seed": (0 <= self.perturb_seed < 2**32, "0 <= perturb_seed < 2**32"),
        }
        check_ranges("eval", self, checks)
