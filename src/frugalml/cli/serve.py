"""`frugalml serve`."""

from __future__ import annotations

from typing import Annotated

import typer

from frugalml import ui
from frugalml.cli import app, quiet_libraries


@app.command()
def serve(
    bundle: Annotated[str, typer.Argument(help="Bundle id (or unique prefix) or folder.")],
    host: Annotated[
        str, typer.Option(help="Address to bind; loopback unless you mean otherwise.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve a bundle over HTTP: POST /v1/predict, /healthz, /readyz, /metrics."""
    quiet_libraries()
    import uvicorn

    from frugalml.registry import resolve_bundle
    from frugalml.runtime import load_predictor
    from frugalml.serve import create_app
    from frugalml.workflows import open_registry

    predictor = load_predictor(resolve_bundle(bundle, open_registry()))
    ui.err.print(f"serving {predictor.bundle.id} ({predictor.bundle.name}) on http://{host}:{port}")
    uvicorn.run(create_app(predictor), host=host, port=port, log_level="warning")
