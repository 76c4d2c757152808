"""`frugalml tune` on images: the options that apply, and those that do not."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from frugalml import ui
from frugalml.cli.options import given
from frugalml.errors import FrugalError

if TYPE_CHECKING:
    from frugalml.tune.workflow import TuneSummary


# `tune`'s parameters by task: image-only ones, and those both tasks take; every other is text-only.
IMAGE_OPTIONS = frozenset({"model", "image_size", "augment", "weights"})
SHARED_OPTIONS = frozenset(
    {"train", "eval", "name", "device", "epochs", "lr", "batch_size", "seed", "class_weight", "json"}
)


def options_given(ctx: typer.Context) -> dict[str, str]:
    """The options the user set (on the command line or in the environment): name -> flag."""
    # By the source's name: typer's bundled click has its own ParameterSource enum.
    unset = ("DEFAULT", "DEFAULT_MAP")
    flags = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if param.name and source is not None and source.name not in unset:
            flags[param.name] = param.opts[0]
    return flags


def refuse_options(flags: list[str], reason: str) -> None:
    """Refuse the options given that the data's task has no use for."""
    if flags:
        raise FrugalError(f"{', '.join(flags)}: not for this data ({reason})")


def tune_images(
    train: Path,
    eval: Path | None,
    name: str | None,
    device: str | None,
    model: str | None,
    image_size: int | None,
    augment: str | None,
    weights: Path | None,
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    seed: int | None,
    class_weight: str | None,
) -> TuneSummary:
    """Tune an image classifier with the options `frugalml tune` was given for images."""
    from frugalml.tune import TuneCompute
    from frugalml.tune.config import ImageTuneConfig
    from frugalml.tune.image_workflow import tune_images_and_register

    options = given(
        model=model,
        image_size=image_size,
        augment=augment,
        weights=None if weights is None else str(weights),
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    )
    if class_weight is not None:
        options["class_weight"] = None if class_weight == "none" else class_weight
    return tune_images_and_register(
        train,
        ImageTuneConfig(**options),
        eval_path=eval,
        name=name,
        reporter=ui.RichReporter(),
        compute=TuneCompute(**given(device=device)),
    )
