"""Predictors: load a bundle, warm it up, turn batches of texts into class probabilities."""

from frugalml.runtime.predictor import Prediction, Predictor, load_predictor, register_format

__all__ = ["Prediction", "Predictor", "load_predictor", "register_format"]
