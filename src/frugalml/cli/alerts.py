"""`frugalml alerts list`."""

from __future__ import annotations

from typing import Annotated

import typer

from frugalml import ui
from frugalml.cli.options import Json

app = typer.Typer(
    help="Alerts raised by the embedded evaluator of `frugalml serve --alerts`.", no_args_is_help=True
)


@app.command("list")
def alerts_list(
    firing: Annotated[bool, typer.Option("--firing", help="Only alerts firing now.")] = False,
    json: Json = False,
) -> None:
    """Alerts firing now and past ones, newest first (from the lineage store)."""
    from frugalml.lineage import open_store

    rows = open_store().list_alerts()
    if firing:
        rows = [row for row in rows if row["status"] == "firing"]
    if json:
        ui.emit_json(rows)
        return
    shown = [
        (
            row["status"],
            row["alertname"],
            row["model"],
            ", ".join(
                f"{k}={v}" for k, v in row["labels"].items() if k not in ("alertname", "model", "severity")
            ),
            row["labels"].get("severity", ""),
            row["value"],
            row["started_at"],
            row["ended_at"] or "",
        )
        for row in rows
    ]
    ui.out.print(
        ui.table(
            "alerts", ["status", "alert", "model", "labels", "severity", "value", "started", "ended"], shown
        )
    )
