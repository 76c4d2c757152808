"""`frugalml models list|show|rm|export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from frugalml import ui
from frugalml.cli.options import Json

app = typer.Typer(help="List, inspect, export and remove registered bundles.", no_args_is_help=True)


@app.command("list")
def models_list(json: Json = False) -> None:
    """Registered bundles, oldest first."""
    from frugalml.lineage import open_store

    rows = open_store().list_bundles()
    if json:
        ui.emit_json(rows)
        return
    ui.out.print(
        ui.table(
            "bundles",
            ["id", "name", "method", "format", "precision", "size", "accuracy", "parent", "created"],
            [
                (
                    r["id"],
                    r["name"],
                    r["method"],
                    r["format"],
                    r["precision"],
                    ui.human_bytes(r["size_bytes"]),
                    r["metrics"].get("accuracy"),
                    r["parent_id"],
                    r["created_at"],
                )
                for r in rows
            ],
        )
    )


@app.command("show")
def models_show(
    bundle: Annotated[str, typer.Argument(help="Bundle id or unique prefix.")],
    json: Json = False,
) -> None:
    """A bundle's manifest and its whole lineage: parents, runs and data."""
    from frugalml.lineage import open_store, resolve_bundle

    lineage = open_store()
    chain = lineage.lineage(bundle)
    manifest = resolve_bundle(chain[0]["path"], verify=False).manifest()
    if json:
        ui.emit_json({"bundle": manifest, "lineage": chain})
        return
    rows = [
        (m, manifest[m]) for m in ("id", "name", "method", "base_model", "format", "precision", "created_at")
    ]
    rows += [(f"metric {k}", v) for k, v in manifest["metrics"].items()]
    ui.out.print(ui.table(f"bundle {manifest['id']}", ["key", "value"], rows))
    history = [
        (
            r["id"],
            r["method"],
            r["format"],
            ui.short_path(r["data_path"]) if r["data_path"] else "",
            (r["dataset"] or {}).get("sha256", "")[:12],
            r["run_id"],
        )
        for r in chain
    ]
    ui.out.print(
        ui.table("lineage (newest first)", ["id", "method", "format", "data", "data sha256", "run"], history)
    )


@app.command("rm")
def models_rm(
    bundle: Annotated[str, typer.Argument(help="Bundle id or unique prefix.")],
    json: Json = False,
) -> None:
    """Remove a bundle from the lineage store and delete its folder."""
    from frugalml.lineage import open_store

    row = open_store().remove_bundle(bundle)
    if json:
        ui.emit_json({"removed": row["id"]})
    else:
        ui.out.print(f"removed {row['id']} ({row['path']})")


@app.command("export")
def models_export(
    bundle: Annotated[str, typer.Argument(help="Bundle id, unique prefix or folder (a PyTorch bundle).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to create (absent or empty).")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="sentence-transformers: standard modules, loads with no remote code; "
            "hf: transformers folder with frugalml's classifier code (trust_remote_code=True).",
        ),
    ] = "sentence-transformers",
    json: Json = False,
) -> None:
    """Write a bundle as a standard model folder with a model card, to use without frugalml."""
    from frugalml.lineage import open_store, resolve_bundle
    from frugalml.models.portable import export_bundle, training_data_sha256

    lineage = open_store()
    source = resolve_bundle(bundle, lineage)
    result = export_bundle(source, output, format, data_sha256=training_data_sha256(source, lineage))
    if json:
        ui.emit_json(result.to_json())
        return
    ui.out.print(
        f"exported {result.bundle_id} as {result.format} to {result.path} "
        f"({len(result.files)} files, {ui.human_bytes(result.size_bytes)}; base {result.base_model}; "
        f"max logit difference from the bundle {result.max_abs_diff:.1g})"
    )
