"""The `tune` pipeline step.

- id: tune
  tune: {train: data/train.csv, eval: data/test.csv, method: lora}
"""

from __future__ import annotations

from typing import Any

from frugalml.step_kind import COLUMN_KEYS, StepContext, column_settings, config_from, config_keys, step_kind
from frugalml.tune.config import TuneConfig
from frugalml.tune.workflow import tune_and_register


def tune_config(args: dict[str, Any]) -> TuneConfig:
    return config_from(args, TuneConfig)


def run_tune(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    return tune_and_register(
        args["train"],
        context.config,
        eval_path=args.get("eval"),
        name=args.get("name"),
        columns=column_settings(args),
        reporter=context.reporter,
        settings=context.settings,
    )


TUNE = step_kind(
    run_tune,
    required={"train"},
    optional=config_keys(TuneConfig) | {"eval", "name"} | COLUMN_KEYS,
    outputs={
        "bundle_id",
        "bundle_path",
        "method",
        "base",
        "metrics",
        "train_seconds",
        "trainable_params",
        "total_params",
        "peak_rss_mb",
        "epochs_run",
        "size_bytes",
        "run_id",
    },
    config=tune_config,
)
