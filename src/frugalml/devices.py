"""Where a stage computes: `--device auto|cpu|cuda[:N]|mps`, and the mixed precision it supports.

Parsing needs no torch, so commands check the option before loading anything heavy; resolving
asks torch what is present.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from frugalml.errors import FrugalError

if TYPE_CHECKING:
    import torch

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
DEVICE_HELP = "auto (the best present: cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"
_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def parse_device(name: str | None) -> str:
    """The device name, checked; None means auto."""
    name = (name or "auto").strip().lower()
    if not _PATTERN.fullmatch(name):
        raise FrugalError(f"unknown device {name!r}: use {DEVICE_HELP}")
    return name


def resolve_device(name: str | None = None) -> torch.device:
    """The torch device for `name`; a device asked for by name must be present."""
    import torch

    name = parse_device(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FrugalError(f"device {name!r} asked for, but this machine has no usable CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FrugalError(
                f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise FrugalError("device 'mps' asked for, but this machine has no usable Apple GPU")
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The half precision worth computing in on `device`: bf16 where the GPU has it, else fp16;
    None on CPU, where autocast is slower than fp32 on most processors."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def autocast(device: torch.device, enabled: bool = True) -> AbstractContextManager:
    """Mixed precision on `device` where it pays (see `autocast_dtype`); a no-op elsewhere."""
    import torch

    dtype = autocast_dtype(device) if enabled else None
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def onnx_providers(name: str | None = None) -> list[str | tuple[str, dict[str, str]]]:
    """ONNX Runtime's execution providers for device `name`, best first: its CUDA provider on a
    CUDA device (auto: when this ONNX Runtime build offers it), else its CPU provider. The CPU
    provider stays last on a GPU too: ONNX Runtime places there the nodes CUDA has no kernel for.
    """
    import onnxruntime as ort

    name = parse_device(name)
    offered = CUDA_PROVIDER in ort.get_available_providers()
    if name == "auto":
        return [CUDA_PROVIDER, CPU_PROVIDER] if offered else [CPU_PROVIDER]
    if name == "mps":
        raise FrugalError("ONNX bundles run on cpu or cuda; ONNX Runtime has no provider for 'mps'")
    if name == "cpu":
        return [CPU_PROVIDER]
    if not offered:
        raise FrugalError(
            f"device {name!r} asked for, but this ONNX Runtime has no {CUDA_PROVIDER} "
            "(install onnxruntime-gpu in place of onnxruntime)"
        )
    _, _, index = name.partition(":")
    return [(CUDA_PROVIDER, {"device_id": index or "0"}), CPU_PROVIDER]
