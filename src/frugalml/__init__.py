"""frugalml: from partly labelled data to a cheap, fast, monitored classification endpoint."""

__version__ = "0.1.0"
