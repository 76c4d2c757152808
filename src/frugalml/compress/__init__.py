"""Model compression: ONNX export first; further techniques build on it."""

from frugalml.compress.onnx_export import export_onnx

__all__ = ["export_onnx"]
