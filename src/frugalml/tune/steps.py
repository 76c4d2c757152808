"""The `tune` pipeline step.

- id: tune
  tune: {train: data/train.csv, eval: data/test.csv, method: lora}
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from frugalml.step_kind import COLUMN_KEYS, StepContext, column_settings, config_from, config_keys, step_kind
from frugalml.tune.config import TuneConfig
from frugalml.tune.workflow import TuneSummary, tune_and_register


def tune_config(args: dict[str, Any]) -> TuneConfig:
    return config_from(args, TuneConfig)


def run_tune(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    summary = tune_and_register(
        args["train"],
        context.config,
        eval_path=args.get("eval"),
        name=args.get("name"),
        columns=column_settings(args),
        reporter=context.reporter,
        settings=context.settings,
    )
    return summary.to_json()


TUNE = step_kind(
    run_tune,
    required={"train"},
    optional=config_keys(TuneConfig) | {"eval", "name"} | COLUMN_KEYS,
    outputs={f.name for f in fields(TuneSummary)},
    config=tune_config,
)
