"""`frugalml compress`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from frugalml import ui
from frugalml.cli.options import Json, LabelColumn, TextColumn
from frugalml.names import split_names

DRIFT_WARNING = 0.15
# The names of compress.techniques.TECHNIQUES, written out: importing the table loads PyTorch and
# ONNX Runtime, seconds that every command's start would pay (a test keeps the two equal).
TECHNIQUES_HELP = "Comma-separated: onnx, int8, int8-static, trim, prune, distill (default: all)."


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
    max_drop: Annotated[float, typer.Option(help="Accuracy points the selected candidate may lose.")] = 1.0,
    techniques: Annotated[str | None, typer.Option(help=TECHNIQUES_HELP)] = None,
    unlabelled: Annotated[
        Path | None, typer.Option(help="Unlabelled in-domain text for distillation.")
    ] = None,
    layers: Annotated[
        str | None, typer.Option(help="Student depths to prune to, comma-separated (default: half).")
    ] = None,
    heads: Annotated[float, typer.Option(help="Fraction of attention heads each layer keeps.")] = 1.0,
    ffn: Annotated[float, typer.Option(help="Fraction of FFN neurons each layer keeps.")] = 1.0,
    distill_epochs: Annotated[int, typer.Option(help="Distillation epochs.")] = 3,
    augment: Annotated[int, typer.Option(help="Perturbed copies of each training text to distill on.")] = 1,
    threads: Annotated[int, typer.Option(help="Threads per measured candidate (0: every core).")] = 0,
    latency_runs: Annotated[int, typer.Option(help="Single-text calls timed per candidate.")] = 200,
    measure_seconds: Annotated[
        float, typer.Option(help="Least seconds spent measuring batch-32 throughput per candidate.")
    ] = 2.0,
    keep: Annotated[
        str, typer.Option(help="'front': delete dominated candidates; 'all': keep them.")
    ] = "front",
    out: Annotated[Path | None, typer.Option(help="Folder for the report (JSON, table, PNG).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling, augmentation and training.")] = 0,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    json: Json = False,
) -> None:
    """Compress a bundle: build candidates, measure each here, select the smallest within budget.

    Every candidate is a registered bundle (parent: the bundle it was made from) that serve, eval
    and predict load as they are. The report (JSON, Markdown table, PNG plot) is written to --out
    (default: FRUGALML_HOME/reports/RUN_ID).
    """
    ui.quiet_libraries()
    from frugalml.compress.search import DEFAULT_TECHNIQUES
    from frugalml.compress.workflow import CompressConfig, compress_and_register

    config = CompressConfig(
        techniques=tuple(split_names(techniques)) if techniques is not None else DEFAULT_TECHNIQUES,
        max_drop=max_drop,
        layers=_numbers(layers, int),
        heads=heads,
        ffn=ffn,
        distill_epochs=distill_epochs,
        augment_copies=augment,
        threads=threads,
        latency_runs=latency_runs,
        measure_seconds=measure_seconds,
        keep=keep,
        seed=seed,
    )
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
        ui.emit_json(result)
        return
    from frugalml.compress.report import COLUMNS, table_rows

    ui.out.print(
        ui.table(f"compression candidates ({result['threads']} threads)", COLUMNS, table_rows(result))
    )
    drift = max(abs(v) for v in result["drift"].values())
    if drift > DRIFT_WARNING:
        ui.err.print(
            f"[yellow]warning:[/] the baseline measured {100 * drift:.0f}% differently at the end than at "
            "the start: the machine's load changed while measuring, so the speed ratios are unreliable"
        )
    for failure in result["failed"]:
        ui.err.print(f"[yellow]not built:[/] {failure['recipe']}: {failure['error']}")
    selected = result["selected"]
    if selected["bundle_id"] == result["baseline"]["bundle_id"]:
        ui.out.print(
            f"no candidate within {result['max_drop']} accuracy points is smaller than {bundle}; keep it"
        )
    else:
        ui.out.print(
            f"selected {selected['bundle_id']} ({selected['recipe']}): "
            f"{selected['size_ratio']:.1f}x smaller, "
            f"{selected['throughput_ratio']:.1f}x the batch-32 throughput, "
            f"{-selected['accuracy_drop']:+.2f} accuracy points"
        )
        ui.out.print(f"serve it with:  frugalml serve {selected['bundle_id']}")
    ui.out.print(f"report: {result['report']['md']}  {result['report']['png']}")
