"""The `compress` pipeline step.

    - id: compress
      compress: {bundle: "${tune.bundle_id}", train: data/fit.csv, eval: data/dev.csv, max_drop: 1.0}

Outputs the selected bundle (`bundle_id`, `bundle_path`, `accuracy`, `size_bytes`), the baseline
id and the report paths; later steps refer to `${compress.bundle_id}`.
"""

from __future__ import annotations

from typing import Any

from frugalml.compress.config import CompressConfig
from frugalml.compress.workflow import compress_and_register
from frugalml.names import split_names
from frugalml.step_kind import COLUMN_KEYS, StepContext, column_settings, config_from, config_keys, step_kind

INPUTS = {"bundle", "train", "eval", "unlabelled", "out"}


def step_config(args: dict[str, Any]) -> CompressConfig:
    """The step's settings as a CompressConfig; techniques as a list or comma-separated, student
    depths and fractions as a list or one number."""
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    for key in ("layers", "ffn", "channels"):
        if isinstance(settings.get(key), int | float):
            settings[key] = (settings[key],)
    if "techniques" in settings:
        settings["techniques"] = tuple(split_names(settings["techniques"]))
    return config_from(settings, CompressConfig)


def run_compress(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    result = compress_and_register(
        args["bundle"],
        args["train"],
        args["eval"],
        context.config,
        unlabelled_path=args.get("unlabelled"),
        columns=column_settings(args),
        out_dir=args.get("out"),
        reporter=context.reporter,
        settings=context.settings,
    )
    selected = result.selected or result.baseline
    return {
        "bundle_id": selected["bundle_id"],
        "bundle_path": selected["bundle_path"],
        "accuracy": selected["accuracy"],
        "macro_f1": selected["macro_f1"],
        "size_bytes": selected["size_bytes"],
        "baseline_id": result.baseline["bundle_id"],
        "report": result.report["json"],
    }


COMPRESS = step_kind(
    run_compress,
    required={"bundle", "train", "eval"},
    optional=config_keys(CompressConfig) | INPUTS | COLUMN_KEYS,
    outputs={"bundle_id", "bundle_path", "accuracy", "macro_f1", "size_bytes", "baseline_id", "report"},
    config=step_config,
)
