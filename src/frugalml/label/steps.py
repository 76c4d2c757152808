"""Pipeline step kinds for labelling: label_auto, label_suggest, label_import, label_issues, label_augment.

    - id: label
      label_auto: {labelled: data/train.csv, unlabelled: data/pool.csv, target_precision: 0.95}
    - id: tune
      tune: {train: "${label.data}", eval: data/test.csv}

Files a step writes go to `out` when given, else under FRUGALML_HOME/labels/<the step's cache key>/
(its settings and the content of its input files), so a re-run with the same inputs rewrites the
same paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugalml.data import load_dataset
from frugalml.label.active import DEFAULT_STRATEGY
from frugalml.label.embeddings import Encoder
from frugalml.label.workflows import (
    REPORT_SUFFIXES,
    AutoLabelConfig,
    augment_dataset,
    auto_label_files,
    check_outputs,
    import_export,
    label_issues,
    parse_labels,
    suggest_files,
    write_frame,
    write_issues_report,
)
from frugalml.names import split_names
from frugalml.step_kind import COLUMN_KEYS, StepContext, column_settings, config_from, config_keys, step_kind


def _workdir(context: StepContext) -> Path:
    """The step's folder, named by its cache key (its settings and the content of its input files):
    a rerun with the same inputs rewrites the same files, and one with new inputs or settings writes
    beside them, leaving the files an earlier cached run points to as they were."""
    return context.settings.home / "labels" / context.key[:16]


def _encoder(args: dict[str, Any]) -> Encoder:
    return Encoder(base=args.get("base", "minilm"), bundle=args.get("bundle"))


AUTO_FILES = {"labelled", "unlabelled", "out", "review", *COLUMN_KEYS}


def auto_config(args: dict[str, Any]) -> AutoLabelConfig:
    return config_from({**args, "labels": parse_labels(args.get("labels"))}, AutoLabelConfig)


def run_label_auto(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    folder = _workdir(context)
    out = Path(args.get("out") or folder / "labelled.csv")
    review = Path(args.get("review") or out.with_name(out.stem + ".review.csv"))
    summary = auto_label_files(
        args["labelled"],
        args["unlabelled"],
        out,
        review,
        context.config,
        column_settings(args),
        context.reporter,
        context.settings,
    )
    return {**summary, "data": str(out)}


def run_label_suggest(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    out = Path(args.get("out") or _workdir(context) / "tasks.json")
    summary = suggest_files(
        args["pool"],
        int(args["budget"]),
        out,
        strategy=args.get("strategy", DEFAULT_STRATEGY),
        labelled_path=args.get("labelled"),
        encoder=_encoder(args),
        labels=parse_labels(args.get("labels")),
        dup_threshold=float(args.get("dup_threshold", 0.95)),
        seed=int(args.get("seed", 0)),
        columns=column_settings(args),
        reporter=context.reporter,
    )
    return {k: v for k, v in summary.items() if k != "rows"} | {"ids": [r["id"] for r in summary["rows"]]}


def run_label_import(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    out = Path(args.get("out") or _workdir(context) / "imported.csv")
    summary = import_export(args["data"], out, parse_labels(args.get("labels")))
    return {**summary, "data": str(out)}


def run_label_issues(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    path = Path(args.get("report") or _workdir(context) / "issues.csv")
    check_outputs([args["data"]], [path], REPORT_SUFFIXES)  # before the encoding, the slow part
    data = load_dataset(args["data"], **column_settings(args))
    report = label_issues(
        data,
        _encoder(args),
        int(args.get("folds", 5)),
        int(args.get("seed", 0)),
        float(args.get("dup_threshold", 0.95)),
        context.reporter,
    )
    write_issues_report(report, path, str(args["data"]))
    return {
        "rows": report["rows"],
        "label_issues": len(report["issues"]),
        "near_duplicates": len(report["near_duplicates"]),
        "outliers": len(report["outliers"]),
        "report": str(path),
    }


def run_label_augment(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    out = Path(args.get("out") or _workdir(context) / "augmented.csv")
    check_outputs([args["data"]], [out])
    data = load_dataset(args["data"], **column_settings(args), require_labels=False)
    operations = split_names(args.get("operations", ["swap", "delete", "typo"]))
    frame = augment_dataset(data, int(args.get("per_row", 2)), operations, int(args.get("seed", 0)))
    write_frame(frame, out)
    return {"data": str(out), "rows": len(frame), "synthetic": int(frame["synthetic"].sum())}


AUTO_LABEL_OUTPUTS = {
    "labelled",
    "pool",
    "auto_rows_labelled_again",
    "pool_rows_already_labelled",
    "accepted",
    "coverage",
    "estimated_precision",
    "target_precision",
    "precision_rule",
    "threshold",
    "review",
    "rounds",
    "neighbours",
    "accepted_per_label",
    "labels_without_seed_rows",
    "encoder",
    "folds",
    "notes",
    "labelled_in_pool",
    "out",
    "review_out",
    "run_id",
    "data",
}

LABEL_AUTO = step_kind(
    run_label_auto,
    required={"labelled", "unlabelled"},
    optional=config_keys(AutoLabelConfig) | AUTO_FILES,
    outputs=AUTO_LABEL_OUTPUTS,
    config=auto_config,
)
LABEL_SUGGEST = step_kind(
    run_label_suggest,
    required={"pool", "budget"},
    optional={
        "strategy",
        "labelled",
        "out",
        "base",
        "bundle",
        "labels",
        "dup_threshold",
        "seed",
        *COLUMN_KEYS,
    },
    outputs={
        "strategy",
        "budget",
        "suggested",
        "excluded_already_labelled",
        "labelled_in_pool",
        "tasks",
        "label_config",
        "notes",
        "ids",
    },
)
LABEL_IMPORT = step_kind(
    run_label_import,
    required={"data"},
    optional={"out", "labels"},
    outputs={"rows", "skipped_unannotated", "labels", "out", "data"},
)
LABEL_ISSUES = step_kind(
    run_label_issues,
    required={"data"},
    optional={"report", "folds", "seed", "dup_threshold", "base", "bundle", *COLUMN_KEYS},
    outputs={"rows", "label_issues", "near_duplicates", "outliers", "report"},
)
LABEL_AUGMENT = step_kind(
    run_label_augment,
    required={"data"},
    optional={"out", "per_row", "operations", "seed", *COLUMN_KEYS},
    outputs={"data", "rows", "synthetic"},
)
