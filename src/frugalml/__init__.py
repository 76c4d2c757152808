"""frugalml: from partly labelled data to a cheap, fast, monitored classification endpoint."""

__version__ = "0.1.0"

from frugalml import _torchvision  # before anything imports transformers

_torchvision.install()
