"""Base encoders and the classifier built on them."""

from frugalml.models.base import load_tokenizer, new_classifier, resolve_base
from frugalml.models.hf_model import FrugalTextClassifier, FrugalTextClassifierConfig
from frugalml.models.loading import (
    load_bundle_config,
    load_bundle_model,
    load_bundle_tokenizer,
    load_bundle_torch,
)

__all__ = [
    "FrugalTextClassifier",
    "FrugalTextClassifierConfig",
    "load_bundle_config",
    "load_bundle_model",
    "load_bundle_tokenizer",
    "load_bundle_torch",
    "load_tokenizer",
    "new_classifier",
    "resolve_base",
]
