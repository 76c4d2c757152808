"""Pipeline step kinds for labelling: label_auto, label_suggest, label_import, label_issues, label_augment.

    - id: label
      label_auto: {labelled: data/train.csv, unlabelled: data/pool.csv, target_precision: 0.95}
    - id: tune
      tune: {train: "${label.data}", eval: data/test.csv}

Each kind builds its config (label.config) from its settings, so its cache key covers every
setting with its default filled in, and runs its workflow (label.workflow). Files a step writes go
to `out` when given, else under FRUGALML_HOME/labels/<the step's cache key>/ (its settings and the
content of its input files), so a re-run with the same inputs rewrites the same paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frugalml.label.config import AugmentConfig, AutoLabelConfig, ImportConfig, IssuesConfig, SuggestConfig
from frugalml.label.workflow.augment import augment_files
from frugalml.label.workflow.auto_images import auto_label_paths, output_suffix
from frugalml.label.workflow.importing import import_export
from frugalml.label.workflow.issues import issues_files
from frugalml.label.workflow.suggest import suggest_files
from frugalml.step_kind import COLUMN_KEYS, StepContext, column_settings, config_from, config_keys, step_kind


def _workdir(context: StepContext) -> Path:
    """The step's folder, named by its cache key (its settings and the content of its input files):
    a rerun with the same inputs rewrites the same files, and one with new inputs or settings writes
    beside them, leaving the files an earlier cached run points to as they were."""
    return context.settings.home / "labels" / context.key[:16]


# Each builder reads its config class when it runs, so a test can stand a new version's defaults in.
def auto_config(args: dict[str, Any]) -> AutoLabelConfig:
    return config_from(args, AutoLabelConfig)


def suggest_config(args: dict[str, Any]) -> SuggestConfig:
    return config_from(args, SuggestConfig)


def import_config(args: dict[str, Any]) -> ImportConfig:
    return config_from(args, ImportConfig)


def issues_config(args: dict[str, Any]) -> IssuesConfig:
    return config_from(args, IssuesConfig)


def augment_config(args: dict[str, Any]) -> AugmentConfig:
    return config_from(args, AugmentConfig)


def run_label_auto(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    suffix = output_suffix(args["unlabelled"])
    out = Path(args.get("out") or _workdir(context) / f"labelled{suffix}")
    review = Path(args.get("review") or out.with_name(out.stem + f".review{suffix}"))
    report = auto_label_paths(
        args["labelled"],
        args["unlabelled"],
        out=out,
        review_out=review,
        config=context.config,
        columns=column_settings(args),
        reporter=context.reporter,
        settings=context.settings,
    )
    return {**report.to_json(), "data": str(out)}


def run_label_suggest(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    result = suggest_files(
        args["pool"],
        out=Path(args.get("out") or _workdir(context) / "tasks.json"),
        config=context.config,
        labelled_path=args.get("labelled"),
        columns=column_settings(args),
        reporter=context.reporter,
    )
    outputs = result.to_json()
    del outputs["rows"]  # a pipeline passes on the ids; the texts are in the tasks file
    return {**outputs, "ids": [row.id for row in result.rows]}


def run_label_import(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    out = Path(args.get("out") or _workdir(context) / "imported.csv")
    result = import_export(args["data"], out=out, config=context.config)
    return {**result.to_json(), "data": str(out)}


def run_label_issues(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    found = issues_files(
        args["data"],
        config=context.config,
        report=Path(args.get("report") or _workdir(context) / "issues.csv"),
        columns=column_settings(args),
        reporter=context.reporter,
    )
    return {
        "rows": found.rows,
        "label_issues": len(found.issues),
        "near_duplicates": len(found.near_duplicates),
        "outliers": len(found.outliers),
        "report": found.report,
    }


def run_label_augment(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    out = Path(args.get("out") or _workdir(context) / "augmented.csv")
    result = augment_files(args["data"], out=out, config=context.config, columns=column_settings(args))
    return {"data": result.out, "rows": result.rows, "synthetic": result.synthetic}


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
    optional=config_keys(AutoLabelConfig) | {"out", "review"} | COLUMN_KEYS,
    outputs=AUTO_LABEL_OUTPUTS,
    config=auto_config,
)
LABEL_SUGGEST = step_kind(
    run_label_suggest,
    required={"pool", "budget"},
    optional=config_keys(SuggestConfig) | {"labelled", "out"} | COLUMN_KEYS,
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
    config=suggest_config,
)
LABEL_IMPORT = step_kind(
    run_label_import,
    required={"data"},
    optional=config_keys(ImportConfig) | {"out"},
    outputs={"rows", "skipped_unannotated", "labels", "out", "data"},
    config=import_config,
)
LABEL_ISSUES = step_kind(
    run_label_issues,
    required={"data"},
    optional=config_keys(IssuesConfig) | {"report"} | COLUMN_KEYS,
    outputs={"rows", "label_issues", "near_duplicates", "outliers", "report"},
    config=issues_config,
)
LABEL_AUGMENT = step_kind(
    run_label_augment,
    required={"data"},
    optional=config_keys(AugmentConfig) | {"out"} | COLUMN_KEYS,
    outputs={"data", "rows", "synthetic"},
    config=augment_config,
)
