"""Lists of names as users give them: comma-separated on the command line, lists in pipeline files."""

from __future__ import annotations

from collections.abc import Sequence

from frugalml.errors import FrugalError


def split_names(value: str | Sequence[str]) -> list[str]:
    """Names from a list or a comma-separated string, as the CLI and pipeline files give them."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise FrugalError(f"expected a list of names or a comma-separated string, got {value!r}")
    return [item.strip() for item in items if item.strip()]
