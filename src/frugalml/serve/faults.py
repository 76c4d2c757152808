"""Induced faults for tests of the alerting path (the hidden `frugalml serve --fault` option).

`slow:SECONDS` makes every model call take that much longer; `error:RATE` makes that share of model
calls fail (their requests get 500). Each wraps the real predictor, so the rest of the server runs
as it does in production.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from frugalml.errors import FrugalError
from frugalml.runtime.predictor import Predictor

KINDS = ("slow", "error")


@dataclass(frozen=True)
class Fault:
    kind: str
    amount: float  # seconds for `slow`, the failing share of calls for `error`

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FrugalError(f"fault kind {self.kind!r} unknown; use slow:SECONDS or error:RATE")
        if self.kind == "slow" and not self.amount >= 0:
            raise FrugalError(f"fault slow:{self.amount} needs seconds >= 0")
        if self.kind == "error" and not 0 <= self.amount <= 1:
            raise FrugalError(f"fault error:{self.amount} needs a rate in [0, 1]")

    @classmethod
    def parse(cls, text: str) -> Fault:
        kind, _, amount = text.partition(":")
        try:
            return cls(kind, float(amount))
        except ValueError:
            raise FrugalError(f"--fault {text!r}: write slow:SECONDS or error:RATE") from None


class InducedFault(RuntimeError):
    pass


class FaultyPredictor:
    """`inner`, with `fault` applied to each model call."""

    def __init__(self, inner: Predictor, fault: Fault, seed: int = 0):
        self.inner = inner
        self.fault = fault
        self.bundle = inner.bundle
        self.labels = inner.labels
        self._random = random.Random(seed)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if self.fault.kind == "slow":
            time.sleep(self.fault.amount)
        elif self._random.random() < self.fault.amount:
            raise InducedFault(f"induced fault: error:{self.fault.amount}")
        return self.inner.predict_proba(texts)

    def warmup(self) -> None:
        self.inner.warmup()
