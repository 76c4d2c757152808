"""The `tune` pipeline step.

- id: tune
  tune: {train: data/train.csv, eval: data/test.csv, method: lora}

Images (a folder of class folders, a table of image paths, a MedMNIST .npz) train an image model
with ImageTuneConfig's settings (model, image_size, augment ...).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from frugalml.data.images import is_image_data
from frugalml.step_kind import COLUMN_KEYS, StepContext, column_settings, config_from, config_keys, step_kind
from frugalml.tune.config import ImageTuneConfig, TuneConfig
from frugalml.tune.image_workflow import tune_images_and_register
from frugalml.tune.workflow import TuneSummary, tune_and_register


def tune_config(args: dict[str, Any]) -> TuneConfig | ImageTuneConfig:
    """ImageTuneConfig where `train` holds images (data.images.is_image_data), else TuneConfig."""
    if "train" in args and is_image_data(args["train"]):
        return config_from(args, ImageTuneConfig)
    return config_from(args, TuneConfig)


def run_tune(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    if isinstance(context.config, ImageTuneConfig):
        return tune_images_and_register(
            args["train"],
            context.config,
            eval_path=args.get("eval"),
            name=args.get("name"),
            reporter=context.reporter,
            settings=context.settings,
        ).to_json()
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
    optional=config_keys(TuneConfig) | config_keys(ImageTuneConfig) | {"eval", "name"} | COLUMN_KEYS,
    outputs={f.name for f in fields(TuneSummary)},
    config=tune_config,
)
