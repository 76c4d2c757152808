"""`compress` settings: one dataclass that refuses values out of range where it is built, so a
bad setting fails before any file is read. Its defaults are the only copy (CLI and pipeline pass
on only what the user gave)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from frugalml.compress.techniques import DEFAULT_TECHNIQUES, TECHNIQUES
from frugalml.devices import parse_device
from frugalml.errors import FrugalError, check_ranges

KEEP = ("front", "all")
DEFAULT_CHANNELS = (0.5,)  # an image student keeps half of each layer's channels


@dataclass
class CompressConfig:
    techniques: tuple[str, ...] = DEFAULT_TECHNIQUES
    max_drop: float = 1.0  # accuracy points the selected candidate may lose
    # Student and distillation settings; () or None: chosen from the data's size and the budget
    # (compress/defaults.py), which the run records.
    layers: tuple[int, ...] = ()  # student depths for prune
    heads: float | None = None  # fraction of attention heads kept per layer
    ffn: tuple[float, ...] = ()  # fractions of FFN neurons kept per layer: a student per depth and fraction
    channels: tuple[float, ...] = ()  # image students: fractions of channels kept; () = DEFAULT_CHANNELS
    distill_epochs: int | None = None
    augment_copies: int | None = None
    splice: float | None = None  # share of those copies that splice two texts; None: distill's
    threads: int = 0  # threads per measured candidate; 0 = every core
    latency_runs: int = 200  # single-text calls timed per candidate
    measure_seconds: float = 2.0  # least time spent on the batch-32 throughput run
    keep: str = "front"  # "front": remove bundles off the Pareto front; "all": keep every bundle
    seed: int = 0
    # Where distillation trains and its teacher labels (frugalml.devices); a placement, not an
    # input. Every other technique, and every measurement, runs on the CPU (compress/measure.py).
    device: str = "auto"
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # extra options per technique

    def __post_init__(self) -> None:
        self.device = parse_device(self.device)
        known = ", ".join(TECHNIQUES)
        if not self.techniques:
            raise FrugalError(f"no techniques given; choose from {known}")
        unknown = [t for t in self.techniques if t not in TECHNIQUES]
        if unknown:
            raise FrugalError(f"unknown technique(s) {unknown}; choose from {known}")
        if self.keep not in KEEP:
            raise FrugalError(f"keep must be 'front' or 'all', not {self.keep!r}")
        layers = self.layers
        if not isinstance(layers, tuple | list) or not all(isinstance(n, int) and n >= 1 for n in layers):
            raise FrugalError(f"layers is a list of student depths >= 1, not {self.layers!r}")
        if not isinstance(self.ffn, tuple | list) or not all(
            isinstance(f, int | float) and 0 < f <= 1 for f in self.ffn
        ):
            raise FrugalError(
                f"ffn is a list of fractions of FFN neurons to keep, in (0, 1], not {self.ffn!r}"
            )
        if not isinstance(self.channels, tuple | list) or not all(
            isinstance(c, int | float) and 0 < c < 1 for c in self.channels
        ):
            raise FrugalError(
                f"channels is a list of fractions of channels to keep, in (0, 1), not {self.channels!r}"
            )
        unknown = sorted(set(self.options) - set(TECHNIQUES))
        if unknown:
            raise FrugalError(f"options for unknown technique(s) {unknown}; choose from {known}")
        ranges = {
            "max_drop": (self.max_drop >= 0, "max_drop >= 0 accuracy points"),
            "heads": (self.heads is None or 0 < self.heads <= 1, "0 < heads <= 1"),
            "threads": (self.threads >= 0, "threads >= 0"),
            "latency_runs": (self.latency_runs >= 1, "latency_runs >= 1"),
            "measure_seconds": (self.measure_seconds > 0, "measure_seconds > 0"),
            "distill_epochs": (
                self.distill_epochs is None or self.distill_epochs >= 0,
                "distill_epochs >= 0",
            ),
            "augment_copies": (
                self.augment_copies is None or self.augment_copies >= 0,
                "augment_copies >= 0",
            ),
            "splice": (self.splice is None or 0 <= self.splice <= 1, "0 <= splice <= 1"),
        }
        check_ranges("compress", self, ranges)
