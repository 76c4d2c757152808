"""`frugalml compress`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from frugalml import ui
from frugalml.cli.options import Device, Json, LabelColumn, TextColumn
from frugalml.names import split_names

DRIFT_WARNING = 0.15
# The names of compress.techniques.TECHNIQUES, written out: importing the table loads PyTorch and
# ONNX Runtime, seconds that every command's start would pay (a test keeps the two equal).
TECHNIQUES_HELP = (
    "Comma-separated: onnx, int8, int8-static, emb4, int4, trim, prune, distill (default: all but int4)."
)


def _numbers(text: str | None, kind: type) -> tuple:
    if not text:
        return ()
    try:
        return tuple(kind(part) for part in split_names(text))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated {kind.__name__}s, got {text!r}") from None


def compress(
    bundle: Annotated[str, typer.Argument(help="Bundle id (or unique prefix) or folder to compress.")],
    data: Annotated[
        Path, typer.Option("--data", help="Labelled training data: corpus, calibration, distillation.")
    ],
    eval: Annotated[
        Path,
        typer.Option("--eval", help="Held-out labelled data to select on (split off the training data)."),
    ],
    max_drop: Annotated[
        float | None, typer.Option(help="Accuracy points the selected candidate may lose.")
    ] = None,
    techniques: Annotated[str | None, typer.Option(help=TECHNIQUES_HELP)] = None,
    unlabelled: Annotated[
        Path | None, typer.Option(help="Unlabelled in-domain text for distillation.")
    ] = None,
    layers: Annotated[
        str | None, typer.Option(help="Student depths to prune to, comma-separated (default: half).")
    ] = None,
    heads: Annotated[float | None, typer.Option(help="Fraction of attention heads each layer keeps.")] = None,
    ffn: Annotated[
        str | None,
        typer.Option(
            help="Fractions of FFN neurons each layer keeps, comma-separated: a student per depth "
            "and fraction (default: 1,0.5 below 5,000 rows, 0.5 from there)."
        ),
    ] = None,
    channels: Annotated[
        str | None,
        typer.Option(
            help="Image bundles: fractions of each layer's channels a pruned student keeps, "
            "comma-separated (default: 0.5)."
        ),
    ] = None,
    distill_epochs: Annotated[
        int | None, typer.Option(help="Distillation epochs (default: by the number of training rows).")
    ] = None,
    augment: Annotated[
        int | None, typer.Option(help="Perturbed copies of each training text to distill on.")
    ] = None,
    splice: Annotated[
        float | None,
        typer.Option(
            help="Share of those copies that join the start of one training text to the end of "
            "another, of any label (default: 0)."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Threads per measured candidate (0: every core).")
    ] = None,
    latency_runs: Annotated[int | None, typer.Option(help="Single-text calls timed per candidate.")] = None,
    measure_seconds: Annotated[
        float | None,
        typer.Option(help="Least seconds spent measuring batch-32 throughput per candidate."),
    ] = None,
    keep: Annotated[
        str | None, typer.Option(help="'front': delete bundles off the Pareto front; 'all': keep them.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the report (JSON, table, PNG).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling, augmentation and training.")] = None,
    device: Device = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    json: Json = False,
) -> None:
    """Compress a bundle: build candidates, measure each here, select the smallest within budget.

    Text and image bundles alike; for images, --data and --eval are image folders, tables of image
    paths or a MedMNIST .npz (its train split trains, its val split selects).
    Every candidate is a registered bundle (parent: the bundle it was made from) that serve, eval
    and predict load as they are. The report (JSON, Markdown table, PNG plot) is written to --out
    (default: FRUGALML_HOME/reports/RUN_ID). --device places distillation; candidates are
    measured on the CPU, where every format runs.
    """
    ui.quiet_libraries()
    from frugalml.compress.config import CompressConfig
    from frugalml.compress.workflow import compress_and_register

    given: dict[str, Any] = {
        "techniques": tuple(split_names(techniques)) if techniques is not None else None,
        "max_drop": max_drop,
        "layers": _numbers(layers, int) if layers is not None else None,
        "heads": heads,
        "ffn": _numbers(ffn, float) if ffn is not None else None,
        "channels": _numbers(channels, float) if channels is not None else None,
        "distill_epochs": distill_epochs,
        "augment_copies": augment,
        "splice": splice,
        "threads": threads,
        "latency_runs": latency_runs,
        "measure_seconds": measure_seconds,
        "keep": keep,
        "seed": seed,
        "device": device,
    }
    config = CompressConfig(**{k: v for k, v in given.items() if v is not None})  # refuses bad values
    result = compress_and_register(
        bundle,
        data,
        eval,
        config,
        unlabelled_path=unlabelled,
        columns={"text_column": text_column, "label_column": label_column},
        out_dir=out,
        reporter=ui.RichReporter(),
    )
    if json:
        ui.emit_json(result.to_json())
        return
    from frugalml.compress.report import COLUMNS, table_rows

    ui.out.print(
        ui.table(f"compression candidates ({result.threads} threads)", COLUMNS, table_rows(result.to_json()))
    )
    drift = max(abs(v) for v in result.drift.values())
    if drift > DRIFT_WARNING:
        ui.err.print(
            f"[yellow]warning:[/] the baseline measured {100 * drift:.0f}% differently at the end than at "
            "the start: the machine's load changed while measuring, so the speed ratios are unreliable"
        )
    for failure in result.failed:
        ui.err.print(f"[yellow]not built:[/] {failure['recipe']}: {failure['error']}")
    selected = result.selected or result.baseline
    if selected["bundle_id"] == result.baseline["bundle_id"]:
        ui.out.print(
            f"no candidate within {result.max_drop} accuracy points is smaller than {bundle}; keep it"
        )
    else:
        ui.out.print(
            f"selected {selected['bundle_id']} ({selected['recipe']}): "
            f"{selected['size_ratio']:.1f}x smaller, "
            f"{selected['throughput_ratio']:.1f}x the batch-32 throughput, "
            f"{-selected['accuracy_drop']:+.2f} accuracy points"
        )
        ui.out.print(f"serve it with:  frugalml serve {selected['bundle_id']}")
    ui.out.print(f"report: {result.report['md']}  {result.report['png']}")
