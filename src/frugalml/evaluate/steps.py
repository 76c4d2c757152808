"""The `eval` pipeline step.

- id: eval
  eval: {bundle: "${tune.bundle_id}", data: data/test.csv}
"""

from __future__ import annotations

from typing import Any

from frugalml.evaluate.config import EvalConfig
from frugalml.evaluate.workflow import evaluate_bundle
from frugalml.step_kind import COLUMN_KEYS, StepContext, column_settings, config_from, config_keys, step_kind


def eval_config(args: dict[str, Any]) -> EvalConfig:
    return config_from(args, EvalConfig)


def run_eval(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    bundle, report = evaluate_bundle(
        args["bundle"], args["data"], column_settings(args), context.settings, config=context.config
    )
    # bundle_path: a cached result stands only while its bundle still loads (pipeline._still_valid).
    # Every task's keys, None where they do not apply (texts/s of images, ROC AUC of one class).
    return {
        "bundle_id": bundle.id,
        "bundle_path": str(bundle.path),
        **dict.fromkeys(("texts_per_second", "images_per_second", "roc_auc")),
        **report.summary(),
    }


EVAL = step_kind(
    run_eval,
    required={"bundle", "data"},
    optional=config_keys(EvalConfig) | COLUMN_KEYS,
    outputs={
        "bundle_id",
        "bundle_path",
        "n",
        "accuracy",
        "macro_f1",
        "roc_auc",
        "texts_per_second",
        "images_per_second",
    },
    config=eval_config,
)
