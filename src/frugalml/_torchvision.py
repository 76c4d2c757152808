"""Make torchvision importable beside the CPU build of PyTorch that constraints.txt pins.

PyPI's torchvision wheels link their C++ ops (nms, roi_align ...) against PyTorch's CUDA build.
Beside the CPU build those ops cannot load, and torchvision 0.28 then fails on import while it
registers fake kernels for `nms` and `qnms` (its other ops' registrations check first). Hugging
Face transformers imports torchvision whenever it is installed, so that failure would break every
frugalml command, text ones included. frugalml uses none of those ops, only torchvision's models
and transforms (Python): where the ops cannot load, the two schemas are declared before anything
imports torchvision, and the import runs. Calling the ops would still fail, as it does anyway.
`install` does that on the first `import torchvision` only, so importing frugalml imports no torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_declared: list = []  # the Library is kept alive: dropping it drops its definitions


def prepare() -> None:
    """Declare the ops torchvision's import needs, if torchvision is installed and its own C++
    library cannot load. Cheap when torchvision is absent (no import of torch)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or _declared:
        return
    import torch

    library = next(Path(spec.origin).parent.glob("_C*.so"), None)
    try:
        if library is not None:
            torch.ops.load_library(str(library))
            return
    except OSError:
        pass
    declared = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        declared.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _declared.append(declared)


class _PrepareOnImport(importlib.abc.MetaPathFinder):
    """Runs `prepare` when torchvision is first imported, then steps aside for the real import."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            prepare()
        return None  # the import itself is left to the usual finders  # noqa: RET501


def install() -> None:
    """Call `prepare` just before the first `import torchvision` (transformers' included)."""
    if "torchvision" not in sys.modules and not any(isinstance(f, _PrepareOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PrepareOnImport())
