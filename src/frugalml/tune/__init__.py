"""Fine-tuning: head-only, full and parameter-efficient (PEFT) methods."""

from frugalml.tune.config import TuneCompute, TuneConfig
from frugalml.tune.methods import METHODS, get_method
from frugalml.tune.trainer import TuneResult, tune

__all__ = ["METHODS", "TuneCompute", "TuneConfig", "TuneResult", "get_method", "tune"]
