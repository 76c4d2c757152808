"""Evaluation: accuracy, macro-F1, per-class scores, confusion matrix, throughput."""

from frugalml.evaluate.config import EvalConfig
from frugalml.evaluate.metrics import EvalReport, evaluate, plot_confusion, score

__all__ = ["EvalConfig", "EvalReport", "evaluate", "plot_confusion", "score"]
