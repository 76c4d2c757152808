"""Model compression: techniques behind one table, and the accuracy-budgeted search over them.

from frugalml.compress import CompressConfig, compress_and_register
result = compress_and_register("b1234", "fit.csv", "dev.csv", CompressConfig(max_drop=1.0))
result.selected["bundle_id"], result.to_json()
"""

from frugalml.compress.config import CompressConfig
from frugalml.compress.context import CompressContext
from frugalml.compress.onnx_export import export_onnx
from frugalml.compress.result import CompressResult
from frugalml.compress.techniques import TECHNIQUES, apply_technique
from frugalml.compress.workflow import compress_and_register

__all__ = [
    "TECHNIQUES",
    "CompressConfig",
    "CompressContext",
    "CompressResult",
    "apply_technique",
    "compress_and_register",
    "export_onnx",
]
