"""Options that several commands share."""

from typing import Annotated

import typer

from frugalml.devices import DEVICE_HELP

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
TextColumn = Annotated[str | None, typer.Option(help="Text column (default: auto-detect).")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column (default: auto-detect).")]
Device = Annotated[
    str | None,
    typer.Option(help=f"Where to compute: {DEVICE_HELP}.", show_default="auto"),
]
