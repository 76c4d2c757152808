"""`frugalml monitor`: drift reports (and, with the other monitor commands, rules and dashboards)."""

from __future__ import annotations

import typer

from frugalml.cli import drift

app = typer.Typer(help="Watch served models: drift against their training data.", no_args_is_help=True)
app.command("report")(drift.report)
