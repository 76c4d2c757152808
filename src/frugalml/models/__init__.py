"""Base encoders and the classifier built on them."""

from frugalml.models.base import load_tokenizer, new_classifier, resolve_base
from frugalml.models.hf_model import FrugalTextClassifier, FrugalTextClassifierConfig

__all__ = [
    "FrugalTextClassifier",
    "FrugalTextClassifierConfig",
    "load_tokenizer",
    "new_classifier",
    "resolve_base",
]
