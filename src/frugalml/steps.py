"""Built-in pipeline step kinds: tune and eval."""

from __future__ import annotations

from typing import Any

from frugalml.pipeline import COLUMN_KEYS, StepContext, column_settings, config_from, config_keys, step
from frugalml.tune import TuneConfig
from frugalml.workflows import evaluate_bundle, tune_and_register


def tune_config(args: dict[str, Any]) -> TuneConfig:
    return config_from(args, TuneConfig)


@step(
    "tune",
    required={"train"},
    optional=config_keys(TuneConfig) | {"eval", "name"} | COLUMN_KEYS,
    config=tune_config,
)
def tune_step(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    return tune_and_register(
        args["train"],
        context.config,
        eval_path=args.get("eval"),
        name=args.get("name"),
        columns=column_settings(args),
        reporter=context.reporter,
        settings=context.settings,
    )


@step("eval", required={"bundle", "data"}, optional=COLUMN_KEYS)
def eval_step(args: dict[str, Any], context: StepContext) -> dict[str, Any]:
    bundle, report = evaluate_bundle(args["bundle"], args["data"], column_settings(args), context.settings)
    # bundle_path: a cached result stands only while its bundle still loads (pipeline._still_valid).
    return {"bundle_id": bundle.id, "bundle_path": str(bundle.path), **report.summary()}


from frugalml.compress import steps as _compress_steps  # noqa: E402,F401  (registers "compress")
from frugalml.label import steps as _label_steps  # noqa: E402,F401  (registers the label_* step kinds)
