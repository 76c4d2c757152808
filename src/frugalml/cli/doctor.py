"""`frugalml doctor`."""

from __future__ import annotations

from typing import Annotated

import typer

from frugalml import ui
from frugalml.cli.options import Json


def doctor(
    fix: Annotated[bool, typer.Option(help="Repair what was found (without it, only report).")] = False,
    orphans: Annotated[
        str,
        typer.Option(help="Complete bundle folders no row names: 'adopt' (register) or 'remove'."),
    ] = "adopt",
    json: Json = False,
) -> None:
    """Find what killed processes left in FRUGALML_HOME: runs still 'running', unregistered bundles,
    half-written folders; --fix repairs it."""
    from frugalml.doctor import check_home

    report = check_home(fix=fix, orphans=orphans)
    if json:
        ui.emit_json(report.to_json())
        return
    orphan_action = "registered" if orphans == "adopt" else "removed"
    rows = [
        ("runs whose process died", report.dead_runs, "marked failed"),
        ("jobs whose supervisor died", report.dead_jobs, "marked failed, attempt stopped"),
        ("unregistered complete bundles", report.adopted + report.removed, orphan_action),
        ("folders that are no valid bundle", report.broken, "removed" if orphans == "remove" else "left"),
        ("half-written temporary folders", report.partials, "removed"),
    ]
    done = "done" if fix else "to do (--fix)"
    ui.out.print(
        ui.table(
            f"FRUGALML_HOME {report.home}",
            ["found", "count", "ids", done],
            [(what, len(ids), ", ".join(ids) or "-", action if ids else "-") for what, ids, action in rows],
        )
    )
