"""`frugalml monitor rules|dashboard|report`."""

from __future__ import annotations

import json as json_module
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from frugalml import ui
from frugalml.cli import drift
from frugalml.cli.options import Json

app = typer.Typer(
    help="Alert rules, a Grafana dashboard and drift reports for a served model.", no_args_is_help=True
)

Target = Annotated[
    str,
    typer.Argument(
        help="A bundle (id, unique prefix or folder), whose name is the model's; or the model name "
        "it is served under (NAME=BUNDLE)."
    ),
]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")]


def _model_name(target: str) -> str:
    """The served name of `target`: a bundle's name, or `target` itself when it names no bundle."""
    from frugalml.errors import BundleError
    from frugalml.lineage import open_store, resolve_bundle
    from frugalml.serve.catalog import check_model_name

    try:
        return resolve_bundle(target, open_store(), verify=False).name
    except BundleError:
        check_model_name(target)
        return target


def _write(text: str, output: Path | None, json: bool) -> None:
    """`text` to `output` (atomically), else to stdout unless --json prints the document there."""
    from frugalml.data.io import write_text_atomic

    if output is not None:
        write_text_atomic(output, text)
        ui.err.print(f"wrote {ui.short_path(output)}")
    elif not json:
        ui.out.file.write(text)
        ui.out.file.flush()


def rules(
    target: Target,
    output: Output = None,
    tests: Annotated[
        Path | None,
        typer.Option(
            help="Also write `promtool test rules` unit tests for the rules here (they read the rules "
            "from --output, which must then be given)."
        ),
    ] = None,
    p99_ms: Annotated[float | None, typer.Option(help="Alert above this p99 request latency (ms).")] = None,
    error_ratio: Annotated[
        float | None, typer.Option(help="Alert above this share of 5xx answers other than 503.")
    ] = None,
    overload_ratio: Annotated[float | None, typer.Option(help="Alert above this share of 503s.")] = None,
    queue_saturation: Annotated[
        float | None, typer.Option(help="Alert above this fill of the batch queue (0-1).")
    ] = None,
    drift_psi: Annotated[float | None, typer.Option(help="Alert above this PSI of any feature.")] = None,
    low_confidence: Annotated[
        float | None, typer.Option(help="A prediction with top probability at most this is unsure.")
    ] = None,
    low_confidence_share: Annotated[
        float | None, typer.Option(help="Alert above this share of unsure predictions.")
    ] = None,
    window: Annotated[int | None, typer.Option(help="Seconds of traffic each ratio is over.")] = None,
    for_seconds: Annotated[
        int | None, typer.Option("--for", help="Seconds a condition must hold before its alert fires.")
    ] = None,
    not_ready_for: Annotated[
        int | None, typer.Option(help="Seconds a model may be unready before its alert fires.")
    ] = None,
    json: Json = False,
) -> None:
    """Write Prometheus alert rules for a served model.

    High p99 latency, error ratio, 503s, a saturated queue, a model not ready, drift and a share
    of low-confidence predictions. YAML on stdout by default; --json prints them as JSON, or with
    --output what was written. `frugalml serve --alerts FILE` evaluates the same file itself.
    """
    import yaml

    from frugalml.errors import FrugalError
    from frugalml.monitor.rules import Thresholds, rules_document, rules_unit_tests

    given: dict[str, Any] = {
        "p99_ms": p99_ms,
        "error_ratio": error_ratio,
        "overload_ratio": overload_ratio,
        "queue_saturation": queue_saturation,
        "drift_psi": drift_psi,
        "low_confidence": low_confidence,
        "low_confidence_share": low_confidence_share,
        "window_s": window,
        "for_s": for_seconds,
        "not_ready_for_s": not_ready_for,
    }
    thresholds = Thresholds(**{k: v for k, v in given.items() if v is not None})
    if tests is not None and output is None:
        raise FrugalError("--tests needs --output: the tests name the rule file they check")
    model = _model_name(target)
    document = rules_document(model, thresholds)
    _write(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), output, json)
    if tests is not None and output is not None:
        rule_file = os.path.relpath(output.resolve(), tests.resolve().parent)
        unit_tests = rules_unit_tests(model, thresholds, rule_file)
        _write(yaml.safe_dump(unit_tests, sort_keys=False, allow_unicode=True), tests, json)
    if json:
        written = {
            "model": model,
            "output": str(output) if output else None,
            "tests": str(tests) if tests else None,
        }
        ui.emit_json(written if output else document)


def dashboard(
    target: Target,
    output: Output = None,
    low_confidence: Annotated[
        float | None, typer.Option(help="Bound of an unsure prediction, as in the rules.")
    ] = None,
    json: Json = False,
) -> None:
    """Write a Grafana dashboard (JSON) for a served model.

    Request rate, latency quantiles, errors, batch size, queue, drift, confidence, predictions by
    label and the server process.
    """
    from frugalml.monitor.dashboard import dashboard_document
    from frugalml.monitor.rules import Thresholds

    thresholds = Thresholds(low_confidence=low_confidence) if low_confidence is not None else None
    model = _model_name(target)
    document = dashboard_document(model, thresholds)
    _write(json_module.dumps(document, indent=2) + "\n", output, json)
    if json:
        ui.emit_json({"model": model, "output": str(output)} if output else document)


app.command("rules")(rules)
app.command("dashboard")(dashboard)
app.command("report")(drift.report)
