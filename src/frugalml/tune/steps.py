"""The `tune` and `tune_images` pipeline steps.

- id: tune
  tune: {train: data/train.csv, eval: data/test.csv, method: lora}
- id: xray
  tune_images: {train: data/pneumoniamnist.npz, eval: data/pneumoniamnist.npz, model: cnn}
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from frugalml.step_kind import COLUMN_KEYS, StepContext, column_settings, config_from, config_keys, step_kind
from frugalml.tune.config import ImageTuneConfig, TuneConfig
from frugalml.tune.image_workflow import tune_images_and_register
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


def image_tune_config(args: dict[str, Any]) -> ImageTuneConfig:
    return config_from(args, ImageTuneConfig)


def run_tune_images(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    summary = tune_images_and_register(
        args["train"],
        context.config,
        eval_path=args.get("eval"),
        name=args.get("name"),
        reporter=context.reporter,
        settings=context.settings,
    )
    return summary.to_json()


TUNE_IMAGES = step_kind(
    run_tune_images,
    required={"train"},
    optional=config_keys(ImageTuneConfig) | {"eval", "name"},
    outputs={f.name for f in fields(TuneSummary)},
    config=image_tune_config,
)
