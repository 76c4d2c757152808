"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class FrugalError(Exception):
    """An error the user can fix (bad input, missing file, wrong argument)."""


class DataError(FrugalError):
    """The data file is missing, malformed or unsuitable for the task."""


class BundleError(FrugalError):
    """A bundle is missing, incomplete, tampered with or of an unknown format."""
