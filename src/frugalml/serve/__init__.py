"""HTTP serving of bundles: dynamic batching, v1 and Open Inference Protocol v2, limits, auth."""

from frugalml.serve.app import create_app
from frugalml.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
