"""Evaluation settings: the only copy of each default, checked where they are built."""

from __future__ import annotations

from dataclasses import dataclass

from frugalml.devices import parse_device
from frugalml.errors import check_ranges


@dataclass
class EvalConfig:
    # Texts per model call. Scores can depend on it: dynamic int8 quantizes each call's
    # activations with the call's own range.
    batch_size: int = 64
    device: str = "auto"  # where the model runs (frugalml.devices); a placement, not an input

    def __post_init__(self):
        self.device = parse_device(self.device)
        check_ranges("eval", self, {"batch_size": (self.batch_size >= 1, "batch_size >= 1")})
