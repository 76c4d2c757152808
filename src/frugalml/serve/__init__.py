"""HTTP serving of bundles."""

from frugalml.serve.app import create_app

__all__ = ["create_app"]
