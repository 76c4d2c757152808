"""Tuning settings: the only copy of each default, checked where they are built."""

from __future__ import annotations

from dataclasses import dataclass

from frugalml.errors import FrugalError, check_ranges
from frugalml.tune.methods import get_method

CLASS_WEIGHTS = (None, "balanced")


@dataclass
class TuneConfig:
    method: str = "head"
    base: str = "minilm"
    epochs: int | None = None  # None = by data size: 3 for 10k rows, up to 10 for a few hundred
    lr: float | None = None  # encoder learning rate; None = the method's default
    head_lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 1  # stop after this many epochs plus one without a lower validation loss
    max_length: int = 128
    warmup: float = 0.1
    weight_decay: float = 0.01
    head_c: float | None = None  # logistic-regression C; None = pick on validation
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    class_weight: str | None = None  # "balanced": every class weighs the same in total

    def __post_init__(self):
        get_method(self.method)
        if self.class_weight not in CLASS_WEIGHTS:
            named = " or ".join(repr(w) for w in CLASS_WEIGHTS if w)
            raise FrugalError(
                f"class weight must be {named}, or none (every row weighs the same); "
                f"got {self.class_weight!r}"
            )
        checks = {
            "batch_size": (self.batch_size >= 1, "batch_size >= 1"),
            "seed": (0 <= self.seed < 2**32, "0 <= seed < 2**32"),
            "max_length": (self.max_length >= 2, "max_length >= 2"),
            "val_fraction": (0 < self.val_fraction < 1, "0 < val_fraction < 1"),
            "epochs": (self.epochs is None or self.epochs >= 0, "epochs >= 0"),
            "lr": (self.lr is None or self.lr > 0, "lr > 0"),
            "head_lr": (self.head_lr > 0, "head_lr > 0"),
            "head_c": (self.head_c is None or self.head_c > 0, "head_c > 0"),
            "patience": (self.patience >= 0, "patience >= 0"),
            "warmup": (0 <= self.warmup < 1, "0 <= warmup < 1"),
            "weight_decay": (self.weight_decay >= 0, "weight_decay >= 0"),
            "lora_r": (self.lora_r >= 1, "lora_r >= 1"),
            "lora_alpha": (self.lora_alpha > 0, "lora_alpha > 0"),
            "lora_dropout": (0 <= self.lora_dropout < 1, "0 <= lora_dropout < 1"),
        }
        check_ranges("tune", self, checks)
