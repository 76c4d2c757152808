"""`frugalml label auto|suggest|import|issues|augment`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from frugalml import ui
from frugalml.cli.options import Json, LabelColumn, TextColumn
from frugalml.label.config import AugmentConfig, AutoLabelConfig, ImportConfig, IssuesConfig, SuggestConfig

app = typer.Typer(
    help="Cut labelling cost: auto-label, pick rows for humans, find wrong labels, augment.",
    no_args_is_help=True,
)

IdColumn = Annotated[str | None, typer.Option(help="Id column (default: auto-detect; else row numbers).")]
Base = Annotated[
    str | None,
    typer.Option(
        help=f"Encoder for embeddings: 'minilm' or a local HF model folder (default {AutoLabelConfig.base})."
    ),
]
BundleRef = Annotated[
    str | None,
    typer.Option(
        "--bundle",
        help="Embed with a tuned torch bundle's encoder instead of --base. Image data (a folder of "
        "class folders, a table of image paths, a .npz) needs it: a trained image bundle's "
        "penultimate layer embeds the images.",
    ),
]
Labels = Annotated[
    str | None, typer.Option(help="The label set: comma-separated, or a file with one label per line.")
]


Seed = Annotated[int | None, typer.Option(help=f"Seed (default {AutoLabelConfig.seed}).")]
DupThreshold = Annotated[
    float | None,
    typer.Option(
        help="Cosine similarity at which two texts count as near-duplicates "
        f"(default {IssuesConfig.dup_threshold})."
    ),
]


def _config(config_type: type, **options: object) -> Any:
    """`config_type` from the options the user gave (not None): the others keep the config's defaults."""
    return config_type(**{k: v for k, v in options.items() if v is not None})


def _columns(text_column: str | None, label_column: str | None, id_column: str | None) -> dict:
    return {"text_column": text_column, "label_column": label_column, "id_column": id_column}


@app.command("auto")
def auto(
    labelled: Annotated[Path, typer.Argument(help="Human-labelled seed rows.")],
    unlabelled: Annotated[
        Path,
        typer.Argument(
            help="Pool to label. Rows it has a label for (not from label auto) join the labelled rows."
        ),
    ],
    target_precision: Annotated[
        float | None,
        typer.Option(
            help=f"Precision the accepted labels must reach (default {AutoLabelConfig.target_precision})."
        ),
    ] = None,
    point_estimate: Annotated[
        bool | None,
        typer.Option(
            help="Accept down to where the held-out precision's point estimate reaches the target, "
            "not its Wilson lower bound: more rows, a little less precision. For labels that only "
            "train a model."
        ),
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(help=f"Self-training rounds after the first pass (default {AutoLabelConfig.rounds})."),
    ] = None,
    neighbours: Annotated[
        int | None,
        typer.Option(
            metavar="K",
            help="Before labelling, move each text's embedding towards the mean of its K nearest "
            "texts among the labelled and pool rows (more, surer labels where texts paraphrase "
            f"each other). 0: off. Default {AutoLabelConfig.neighbours}.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Labelled dataset (default: POOL.labelled.csv, or .npz for a .npz pool). Images: a "
            "table of image paths, or a .npz of the pixels."
        ),
    ] = None,
    review: Annotated[
        Path | None, typer.Option(help="Review queue (default: POOL.review.csv, or .npz for a .npz pool).")
    ] = None,
    labels: Labels = None,
    folds: Annotated[
        int | None,
        typer.Option(
            help="Cross-validation folds on the labelled rows (2 or more; fewer where they allow no more; "
            f"default {AutoLabelConfig.folds})."
        ),
    ] = None,
    seed: Seed = None,
    base: Base = None,
    bundle: BundleRef = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    id_column: IdColumn = None,
    json: Json = False,
) -> None:
    """Label a pool with calibrated confidence; accept what meets the target precision.

    The threshold comes from cross-validation on the labelled rows; accepted rows retrain the
    model for --rounds rounds. Writes the labelled rows (label, confidence, source human/auto)
    and a review queue of the rest, most confident first.
    """
    config = _config(
        AutoLabelConfig,
        target_precision=target_precision,
        point_estimate=point_estimate,
        rounds=rounds,
        neighbours=neighbours,
        folds=folds,
        seed=seed,
        base=base,
        bundle=bundle,
        labels=labels,
    )
    ui.quiet_libraries()
    from frugalml.label.workflow.auto_images import auto_label_paths, output_suffix

    suffix = output_suffix(unlabelled)
    summary = auto_label_paths(
        labelled,
        unlabelled,
        out=out or Path(f"{unlabelled.stem}.labelled{suffix}"),
        review_out=review or Path(f"{unlabelled.stem}.review{suffix}"),
        config=config,
        columns=_columns(text_column, label_column, id_column),
        reporter=ui.RichReporter(),
    ).to_json()
    if json:
        ui.emit_json(summary)
        return
    from_pool = summary["labelled_in_pool"]
    rows = [
        ("labelled rows", f"{summary['labelled']}" + (f" ({from_pool} from the pool)" if from_pool else "")),
        ("pool rows", summary["pool"]),
        ("accepted", summary["accepted"]),
        ("coverage", summary["coverage"]),
        ("estimated precision", summary["estimated_precision"]),
        ("target precision", f"{summary['target_precision']} ({summary['precision_rule']})"),
        ("confidence threshold", summary["threshold"]),
        ("left for review", summary["review"]),
    ]
    ui.out.print(ui.table("auto-label", ["key", "value"], rows))
    _print_notes(summary)
    ui.out.print(f"labelled data: {summary['out']}\nreview queue:  {summary['review_out']}")
    # Accepted rows over-represent the classes the model finds easy (docs/labelling.md, (a)).
    ui.out.print(f"tune on it with:  {ui.command_name()} tune {summary['out']} --class-weight balanced")


@app.command("suggest")
def suggest(
    pool: Annotated[
        Path,
        typer.Argument(
            help="Rows to choose from. Rows it has a label for (not from label auto) count as labelled."
        ),
    ],
    budget: Annotated[int, typer.Option(help="How many rows to suggest.")],
    strategy: Annotated[
        str | None,
        typer.Option(
            help="hybrid (uncertain rows, one per cluster; best on BANKING77) | margin | entropy | "
            f"kcenter | random (default {SuggestConfig.strategy})"
        ),
    ] = None,
    labelled: Annotated[
        Path | None, typer.Option(help="Rows already labelled: excluded, and they train the model.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Label Studio tasks JSON to write.")] = Path("suggested.json"),
    labels: Labels = None,
    dup_threshold: DupThreshold = None,
    seed: Seed = None,
    base: Base = None,
    bundle: BundleRef = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    id_column: IdColumn = None,
    json: Json = False,
) -> None:
    """The rows most worth a human's time, as Label Studio tasks with pre-annotations.

    hybrid, margin and entropy rank by a model trained on --labelled; kcenter (and hybrid) also
    work from nothing, for a cold start.
    Never suggests a labelled row or a near-duplicate of one, or two near-duplicates.
    """
    config = _config(
        SuggestConfig,
        budget=budget,
        strategy=strategy,
        labels=labels,
        dup_threshold=dup_threshold,
        seed=seed,
        base=base,
        bundle=bundle,
    )
    ui.quiet_libraries()
    from frugalml.label.workflow.suggest import suggest_files

    summary = suggest_files(
        pool,
        out=out,
        config=config,
        labelled_path=labelled,
        columns=_columns(text_column, label_column, id_column),
        reporter=ui.RichReporter(),
    ).to_json()
    if json:
        ui.emit_json(summary)
        return
    ui.out.print(
        ui.table(
            f"suggested ({summary['strategy']})",
            ["id", "text", "predicted", "score"],
            [(r["id"], r["text"] or "", r["predicted_label"], r["score"]) for r in summary["rows"]],
        )
    )
    ui.out.print(f"Label Studio tasks: {summary['tasks']}")
    if summary["label_config"]:
        ui.out.print(f"labelling config:   {summary['label_config']}")
    _print_notes(summary)


@app.command("import")
def import_command(
    export: Annotated[Path, typer.Argument(help="Label Studio export (JSON or JSON-MIN).")],
    out: Annotated[Path, typer.Option(help="Dataset to write (.csv, .jsonl, .parquet).")] = Path(
        "imported.csv"
    ),
    labels: Labels = None,
    json: Json = False,
) -> None:
    """Read a Label Studio export back into a labelled dataset (ids, texts, labels, columns)."""
    config = _config(ImportConfig, labels=labels)
    from frugalml.label.workflow.importing import import_export

    summary = import_export(export, out=out, config=config).to_json()
    if json:
        ui.emit_json(summary)
        return
    ui.out.print(ui.table("imported labels", ["label", "rows"], sorted(summary["labels"].items())))
    skipped = summary["skipped_unannotated"]
    ui.out.print(
        f"{summary['rows']} rows to {summary['out']}"
        + (f" ({skipped} unannotated skipped)" if skipped else "")
    )


@app.command("issues")
def issues(
    data: Annotated[Path, typer.Argument(help="Labelled data to check.")],
    report: Annotated[Path | None, typer.Option(help="Write every finding here (.csv or .html).")] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            help="Folds for out-of-fold probabilities (2 or more; fewer where the rows allow no more; "
            f"default {IssuesConfig.folds})."
        ),
    ] = None,
    seed: Seed = None,
    dup_threshold: DupThreshold = None,
    top: Annotated[int, typer.Option(help="Rows to show per table (the report has all).")] = 20,
    base: Base = None,
    bundle: BundleRef = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    id_column: IdColumn = None,
    json: Json = False,
) -> None:
    """Likely label errors with a suggested label (cleanlab), conflicting near-duplicates, outliers."""
    config = _config(
        IssuesConfig, folds=folds, seed=seed, dup_threshold=dup_threshold, base=base, bundle=bundle
    )
    ui.quiet_libraries()
    from frugalml.label.workflow.issues import issues_files

    found = issues_files(
        data,
        config=config,
        report=report,
        columns=_columns(text_column, label_column, id_column),
        reporter=ui.RichReporter(),
    ).to_json()
    if json:
        ui.emit_json(found)
        return
    ui.out.print(
        ui.table(
            f"likely label errors: {len(found['issues'])} of {found['rows']} rows",
            ["id", "text", "given", "suggested", "score"],
            [
                (r["id"], r["text"] or "", r["given_label"], r["suggested_label"], r["score"])
                for r in found["issues"][:top]
            ],
        )
    )
    ui.out.print(
        ui.table(
            f"near-duplicates with different labels: {len(found['near_duplicates'])}",
            ["id", "label", "other id", "other label", "similarity"],
            [
                (r["id"], r["label"], r["other_id"], r["other_label"], r["similarity"])
                for r in found["near_duplicates"][:top]
            ],
        )
    )
    ui.out.print(
        ui.table(
            f"outliers: {len(found['outliers'])}",
            ["id", "text", "label", "distance"],
            [(r["id"], r["text"] or "", r["label"], r["distance"]) for r in found["outliers"][:top]],
        )
    )
    if report:
        ui.out.print(f"report: {report}")
    _print_notes(found)


def _print_notes(summary: dict) -> None:
    for note in summary["notes"]:
        ui.err.print(f"[yellow]note:[/] {note}")


@app.command("augment")
def augment(
    data: Annotated[Path, typer.Argument(help="Data to augment (labelled or not).")],
    out: Annotated[Path, typer.Option(help="Dataset to write (.csv, .jsonl, .parquet).")] = Path(
        "augmented.csv"
    ),
    per_row: Annotated[
        int | None,
        typer.Option(help=f"Most synthetic rows per original (1-10; default {AugmentConfig.per_row})."),
    ] = None,
    operations: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: swap, delete, duplicate, typo "
            f"(default {','.join(AugmentConfig.operations)})."
        ),
    ] = None,
    seed: Seed = None,
    text_column: TextColumn = None,
    label_column: LabelColumn = None,
    id_column: IdColumn = None,
    json: Json = False,
) -> None:
    """Add synthetic variants of each text (token swaps, deletions, typos), marked synthetic."""
    config = _config(AugmentConfig, per_row=per_row, operations=operations, seed=seed)
    from frugalml.label.workflow.augment import augment_files

    summary = augment_files(
        data, out=out, config=config, columns=_columns(text_column, label_column, id_column)
    ).to_json()
    if json:
        ui.emit_json(summary)
        return
    ui.out.print(f"{summary['synthetic']} synthetic rows added to {summary['original']}: {out}")
