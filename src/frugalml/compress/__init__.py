"""Model compression: techniques behind one registry, and the accuracy-budgeted search over them.

from frugalml.compress import CompressConfig, compress_and_register
result = compress_and_register("b1234", "fit.csv", "dev.csv", CompressConfig(max_drop=1.0))
"""

from frugalml.compress.onnx_export import export_onnx
from frugalml.compress.techniques import CompressContext, apply_technique, available_techniques
from frugalml.compress.workflow import CompressConfig, compress_and_register

__all__ = [
    "CompressConfig",
    "CompressContext",
    "apply_technique",
    "available_techniques",
    "compress_and_register",
    "export_onnx",
]
