"""Options that several commands share."""

from typing import Annotated, Any

import typer

from frugalml.devices import DEVICE_HELP

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
TextColumn = Annotated[str | None, typer.Option(help="Text column (default: auto-detect).")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column (default: auto-detect).")]
Device = Annotated[
    str | None,
    typer.Option(help=f"Where to compute: {DEVICE_HELP}.", show_default="auto"),
]


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave: the config's defaults stand for the rest."""
    return {name: value for name, value in options.items() if value is not None}
