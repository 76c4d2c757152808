"""Predictors: load a bundle, warm it up, turn batches of inputs (texts, images) into class probabilities."""

from frugalml.runtime.formats import FORMATS, load_predictor
from frugalml.runtime.predictor import Prediction, Predictor

__all__ = ["FORMATS", "Prediction", "Predictor", "load_predictor"]
