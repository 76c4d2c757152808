"""Core commands: run (tune: cli/tune.py; eval and predict: cli/scoring.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from frugalml import ui
from frugalml.cli.options import Json


def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    force: Annotated[bool, typer.Option(help="Re-run every step, ignoring the cache.")] = False,
    json: Json = False,
) -> None:
    """Run a pipeline; steps whose inputs are unchanged are reused from the cache."""
    ui.quiet_libraries()
    from frugalml.pipeline import run_pipeline

    def show(step) -> None:
        state = "cached" if step.cached else "done"
        ui.err.print(f"[bold]step {step.id}[/] ({step.kind}): {state}")

    result = run_pipeline(pipeline, reporter=ui.RichReporter(), force=force, on_step=show)
    if json:
        ui.emit_json(
            {
                "name": result.name,
                "steps": [
                    {"id": s.id, "kind": s.kind, "cached": s.cached, "outputs": s.outputs}
                    for s in result.steps
                ],
            }
        )
        return
    rows = []
    for s in result.steps:
        metrics = s.outputs.get("metrics", s.outputs)
        rows.append(
            (
                s.id,
                s.kind,
                "cached" if s.cached else "ran",
                s.outputs.get("bundle_id"),
                metrics.get("accuracy"),
                metrics.get("macro_f1"),
            )
        )
    ui.out.print(
        ui.table(f"pipeline {result.name}", ["id", "kind", "status", "bundle", "accuracy", "macro-F1"], rows)
    )
    last_bundle = next(
        (s.outputs["bundle_id"] for s in reversed(result.steps) if "bundle_id" in s.outputs), None
    )
    if last_bundle:
        ui.out.print(f"serve the result with:  {ui.command_name()} serve {last_bundle}")
