"""The `frugalml` command: parse arguments, call the library, render the result."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer

from frugalml import ui
from frugalml.errors import FrugalError

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
TextColumn = Annotated[Optional[str], typer.Option(help="Text column (default: auto-detect).")]
LabelColumn = Annotated[Optional[str], typer.Option(help="Label column (default: auto-detect).")]


class _App(typer.Typer):
    """Turns user errors into one line on stderr and exit status 2, never a traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except FrugalError as exc:
            ui.err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            ui.err.print("interrupted")
            raise SystemExit(130) from None


app = _App(
    name="frugalml",
    help="Label, tune, compress, serve and monitor text classifiers on a small budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List, inspect and remove registered bundles.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _quiet_libraries() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@app.command()
def tune(
    train: Annotated[Path, typer.Argument(help="Labelled training data (CSV, JSONL, Parquet, HF folder).")],
    eval: Annotated[Optional[Path], typer.Option("--eval", help="Labelled test data to report on.")] = None,
    method: Annotated[str, typer.Option(help="head | lora | ia3 | full")] = "head",
    base: Annotated[str, typer.Option(help="'minilm' (offline default) or a local HF model folder.")] = "minilm",
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping may end sooner).")] = 4,
    lr: Annotated[Optional[float], typer.Option(help="Encoder learning rate (default: per method).")] = None,
    head_lr: Annotated[float, typer.Option(help="Classifier-head learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed for splits, shuffling and initialisation.")] = 0,
    name: Annotated[Optional[str], typer.Option(help="Bundle name (default: the data file's stem).")] = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    json: Json = False,
) -> None:
    """Fine-tune a classifier and save it as a registered bundle.

    head trains only a classifier on the frozen encoder (seconds to a minute); lora, ia3 and full
    also adapt the encoder, starting from that head, with early stopping on a validation split.
    """
    _quiet_libraries()
    from frugalml.tune import TuneConfig
    from frugalml.workflows import tune_and_register

    config = TuneConfig(method=method, base=base, epochs=epochs, lr=lr, head_lr=head_lr,
                        batch_size=batch_size, seed=seed)
    summary = tune_and_register(
        train, config, eval_path=eval, name=name,
        columns={"text_column": text_column, "label_column": label_column},
        reporter=ui.RichReporter(),
    )
    if json:
        ui.emit_json(summary)
        return
    ui.out.print(_tune_table(summary))
    ui.out.print(f"bundle {summary['bundle_id']} at {summary['bundle_path']}")
    ui.out.print(f"serve it with:  frugalml serve {summary['bundle_id']}")


def _tune_table(summary: dict) -> object:
    metrics = summary["metrics"]
    rows = [
        ("method", summary["method"]),
        ("test accuracy", metrics.get("accuracy")),
        ("test macro-F1", metrics.get("macro_f1")),
        ("validation accuracy", metrics.get("val_accuracy")),
        ("trainable parameters", f"{summary['trainable_params']:,} of {summary['total_params']:,}"),
        ("epochs run", summary["epochs_run"]),
        ("train wall time", f"{summary['train_seconds']:.1f} s"),
        ("peak memory (RSS)", f"{summary['peak_rss_mb']:.0f} MB"),
        ("bundle size", ui.human_bytes(summary["size_bytes"])),
    ]
    return ui.table("tune", ["key", "value"], [r for r in rows if r[1] is not None])


@app.command("eval")
def eval_command(
    bundle: Annotated[str, typer.Argument(help="Bundle id (or unique prefix) or folder.")],
    data: Annotated[Path, typer.Argument(help="Labelled data to evaluate on.")],
    confusion: Annotated[Optional[Path], typer.Option(help="Write a confusion-matrix PNG here.")] = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    json: Json = False,
) -> None:
    """Accuracy, macro-F1 and per-class scores of a bundle on labelled data."""
    _quiet_libraries()
    from frugalml.evaluate import plot_confusion
    from frugalml.workflows import evaluate_bundle

    loaded, report = evaluate_bundle(bundle, data, {"text_column": text_column,
                                                    "label_column": label_column})
    if confusion:
        plot_confusion(report, confusion)
    if json:
        ui.emit_json({"bundle_id": loaded.id, **report.summary(), "per_class": report.per_class,
                      "confusion_png": str(confusion) if confusion else None})
        return
    rows = [(label, s["precision"], s["recall"], s["f1-score"], int(s["support"]))
            for label, s in report.per_class.items()]
    ui.out.print(ui.table(f"per class ({loaded.id})", ["label", "precision", "recall", "f1", "n"], rows))
    ui.out.print(ui.table("overall", ["n", "accuracy", "macro-F1", "texts/s"],
                          [(report.n, report.accuracy, report.macro_f1, report.summary()["texts_per_second"])]))
    if confusion:
        ui.out.print(f"confusion matrix: {confusion}")


@app.command()
def predict(
    bundle: Annotated[str, typer.Argument(help="Bundle id (or unique prefix) or folder.")],
    texts: Annotated[list[str], typer.Argument(help="One or more texts to classify.")],
    json: Json = False,
) -> None:
    """Classify texts given on the command line."""
    _quiet_libraries()
    from frugalml.registry import resolve_bundle
    from frugalml.runtime import load_predictor
    from frugalml.runtime.predictor import top_predictions
    from frugalml.workflows import open_registry

    predictor = load_predictor(resolve_bundle(bundle, open_registry()))
    predictions = top_predictions(predictor.labels, predictor.predict_proba(texts))
    if json:
        ui.emit_json([{"text": t, "label": p.label, "score": p.score} for t, p in zip(texts, predictions)])
        return
    ui.out.print(ui.table("predictions", ["text", "label", "score"],
                          [(t, p.label, p.score) for t, p in zip(texts, predictions)]))


@app.command()
def serve(
    bundle: Annotated[str, typer.Argument(help="Bundle id (or unique prefix) or folder.")],
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless you mean otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve a bundle over HTTP: POST /v1/predict, /healthz, /readyz, /metrics."""
    _quiet_libraries()
    import uvicorn

    from frugalml.registry import resolve_bundle
    from frugalml.runtime import load_predictor
    from frugalml.serve import create_app
    from frugalml.workflows import open_registry

    predictor = load_predictor(resolve_bundle(bundle, open_registry()))
    ui.err.print(f"serving {predictor.bundle.id} ({predictor.bundle.name}) on http://{host}:{port}")
    uvicorn.run(create_app(predictor), host=host, port=port, log_level="warning")


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file.")],
    force: Annotated[bool, typer.Option(help="Re-run every step, ignoring the cache.")] = False,
    json: Json = False,
) -> None:
    """Run a pipeline; steps whose inputs are unchanged are reused from the cache."""
    _quiet_libraries()
    from frugalml.pipeline import run_pipeline

    def show(step) -> None:
        state = "cached" if step.cached else "done"
        ui.err.print(f"[bold]step {step.id}[/] ({step.kind}): {state}")

    result = run_pipeline(pipeline, reporter=ui.RichReporter(), force=force, on_step=show)
    if json:
        ui.emit_json({"name": result.name, "steps": [
            {"id": s.id, "kind": s.kind, "cached": s.cached, "outputs": s.outputs} for s in result.steps]})
        return
    rows = []
    for s in result.steps:
        metrics = s.outputs.get("metrics", s.outputs)
        rows.append((s.id, s.kind, "cached" if s.cached else "ran", s.outputs.get("bundle_id"),
                     metrics.get("accuracy"), metrics.get("macro_f1")))
    ui.out.print(ui.table(f"pipeline {result.name}", ["id", "kind", "status", "bundle", "accuracy", "macro-F1"], rows))
    last_bundle = next((s.outputs["bundle_id"] for s in reversed(result.steps) if "bundle_id" in s.outputs), None)
    if last_bundle:
        ui.out.print(f"serve the result with:  frugalml serve {last_bundle}")


@models_app.command("list")
def models_list(json: Json = False) -> None:
    """Registered bundles, oldest first."""
    from frugalml.workflows import open_registry

    rows = open_registry().list_bundles()
    if json:
        ui.emit_json(rows)
        return
    ui.out.print(ui.table("bundles", ["id", "name", "method", "format", "precision", "size", "accuracy", "parent", "created"],
                          [(r["id"], r["name"], r["method"], r["format"], r["precision"],
                            ui.human_bytes(r["size_bytes"]), r["metrics"].get("accuracy"),
                            r["parent_id"], r["created_at"]) for r in rows]))


@models_app.command("show")
def models_show(
    bundle: Annotated[str, typer.Argument(help="Bundle id or unique prefix.")],
    json: Json = False,
) -> None:
    """A bundle's manifest and its whole lineage: parents, runs and data."""
    from frugalml.registry import resolve_bundle
    from frugalml.workflows import open_registry

    registry = open_registry()
    chain = registry.lineage(bundle)
    manifest = resolve_bundle(chain[0]["path"], verify=False).manifest()
    if json:
        ui.emit_json({"bundle": manifest, "lineage": chain})
        return
    rows = [(m, manifest[m]) for m in ("id", "name", "method", "base_model", "format", "precision", "created_at")]
    rows += [(f"metric {k}", v) for k, v in manifest["metrics"].items()]
    ui.out.print(ui.table(f"bundle {manifest['id']}", ["key", "value"], rows))
    lineage = [(r["id"], r["method"], r["format"],
                (r["dataset"] or {}).get("source"), (r["dataset"] or {}).get("sha256", "")[:12],
                r["run_id"]) for r in chain]
    ui.out.print(ui.table("lineage (newest first)", ["id", "method", "format", "data", "data sha256", "run"], lineage))


@models_app.command("rm")
def models_rm(
    bundle: Annotated[str, typer.Argument(help="Bundle id or unique prefix.")],
    json: Json = False,
) -> None:
    """Remove a bundle from the registry and delete its folder."""
    from frugalml.workflows import open_registry

    row = open_registry().remove_bundle(bundle)
    if json:
        ui.emit_json({"removed": row["id"]})
    else:
        ui.out.print(f"removed {row['id']} ({row['path']})")
