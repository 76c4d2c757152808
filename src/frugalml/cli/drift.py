"""`frugalml monitor report`: drift of live traffic against a bundle's reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from frugalml import ui
from frugalml.cli.options import Json
from frugalml.errors import FrugalError

API_KEY_ENV = "FRUGALML_API_KEY"  # as `frugalml serve` reads it


def report(
    bundle: Annotated[str, typer.Argument(help="Bundle id (or unique prefix) or folder: the reference.")],
    log: Annotated[
        Path | None, typer.Option(help="An access log of `frugalml serve` (its JSON lines on stderr).")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="A running server, e.g. http://127.0.0.1:8000 (reads GET /v1/drift).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="The served model's name, where there are several.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="The server's API key (for --url).", envvar=API_KEY_ENV, show_envvar=True),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write a PNG of reference and live distributions.")
    ] = None,
    json: Json = False,
) -> None:
    """PSI and KS of each drift feature (predicted class, confidence, text length, embedding
    components) of live traffic against the reference the bundle carries.

    PSI below 0.1 reads as stable, 0.1 to 0.25 as a moderate shift, above 0.25 as significant.
    """
    if (log is None) == (url is None):
        raise FrugalError("give exactly one of --log ACCESS_LOG or --url URL")
    if output is not None:
        if output.is_dir():
            raise FrugalError(f"{output}: is a folder; name the PNG file to write")
        output = output if output.suffix.lower() == ".png" else output.with_name(output.name + ".png")
    from frugalml.lineage import open_store, resolve_bundle
    from frugalml.monitor import report as drift
    from frugalml.monitor.window import MIN_ROWS

    loaded = resolve_bundle(bundle, open_store())
    reference = drift.bundle_reference(loaded)
    if log is not None:
        name, features = drift.features_from_log(log, model)
        source = str(log)
    else:
        assert url is not None
        name, features = drift.features_from_url(url, model, api_key)
        source = url
    live = drift.live_arrays(features, reference)
    result = drift.drift_report(loaded, reference, name, source, live)
    if output is not None:
        drift.plot_drift(reference, live, result, output)
    if result.rows < MIN_ROWS:
        ui.err.print(
            f"note: only {result.rows} live texts; below {MIN_ROWS} (where the server starts scoring) "
            "PSI is mostly sampling noise"
        )
    if json:
        ui.emit_json({**result.to_json(), "png": str(output) if output else None})
        return
    rows = [
        (feature, score.psi, score.ks if score.ks is not None else "", drift.verdict(score.psi))
        for feature, score in result.scores.items()
    ]
    ui.out.print(
        ui.table(
            f"drift of {name}: {result.rows} live texts against {loaded.id}",
            ["feature", "PSI", "KS", "reading"],
            rows,
        )
    )
    if output is not None:
        ui.out.print(f"wrote {output}")
