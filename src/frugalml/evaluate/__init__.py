"""Evaluation: accuracy, macro-F1, per-class scores, confusion matrix, throughput."""

from frugalml.evaluate.metrics import EvalReport, evaluate, plot_confusion, score

__all__ = ["EvalReport", "evaluate", "plot_confusion", "score"]
