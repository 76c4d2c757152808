"""Device names: checked before anything loads; resolved to what this machine has."""

import pytest
import torch

from frugalml.devices import autocast, autocast_dtype, parse_device, resolve_device
from frugalml.errors import FrugalError


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1", "mps", " CUDA:0 "])
def test_parse_accepts_known_devices(name):
    assert parse_device(name) == name.strip().lower()


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "tpu", "cpu:0"])
def test_parse_refuses_unknown_devices_naming_the_choices(name):
    with pytest.raises(FrugalError, match="cuda:N"):
        parse_device(name)


def test_auto_picks_a_present_device():
    device = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert device.type == expected


def test_cpu_has_no_autocast():
    device = resolve_device("cpu")
    assert autocast_dtype(device) is None
    with autocast(device):
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_absent_cuda_is_a_clear_error():
    with pytest.raises(FrugalError, match="no usable CUDA GPU"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_autocasts_to_half_precision():
    device = resolve_device("cuda")
    with autocast(device):
        product = torch.ones(4, 4, device=device) @ torch.ones(4, 4, device=device)
    assert product.dtype in (torch.bfloat16, torch.float16)
