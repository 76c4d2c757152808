"""The student and distillation settings `compress` chooses from the data's size and the budget.

A setting the user gives is kept; one left out (None, or no `layers`) is chosen here:

- depth: half the source's layers, and a third as well when the budget allows a point or more
  (the shallower student is what reaches 4x the batch-32 throughput; the search keeps it only if
  it stays within the budget);
- width: all attention heads; half the FFN neurons from `WIDE_DATA` labelled rows up; below it
  students of both full and half FFN width, since with a few thousand texts a narrower student
  may not win its accuracy back, and the search keeps the narrow one only when it does;
- transfer set: perturbed copies of the training texts until it holds about `TRANSFER_TEXTS`
  texts (at least 1 and at most `MAX_COPIES` copies each), so that little labelled data still
  gives the student many teacher-labelled texts;
- epochs: about `STEPS` optimizer steps of 32 texts over that set (2 to 10 epochs), so that
  distillation costs about the same at any data size.

Image bundles take only the epochs from here (`chosen_image_settings`), by the same rule over
the training images: their students are chosen by `--channels` and the small CNN.
"""

from __future__ import annotations

import math
from dataclasses import replace

from frugalml.compress.config import CompressConfig

WIDE_DATA = 5000
TRANSFER_TEXTS = 20000
MAX_COPIES = 8
STEPS = 2000
BATCH = 32


def student_depths(source_layers: int, max_drop: float) -> tuple[int, ...]:
    half = max(1, source_layers // 2)
    third = max(1, source_layers // 3)
    return (half, third) if max_drop >= 1.0 and third < half else (half,)


def student_widths(rows: int) -> tuple[float, ...]:
    return (0.5,) if rows >= WIDE_DATA else (1.0, 0.5)


def augment_copies(rows: int) -> int:
    return min(MAX_COPIES, max(1, round(TRANSFER_TEXTS / max(rows, 1)) - 1))


def distill_epochs(rows: int, copies: int) -> int:
    texts = rows * (1 + copies)
    return min(10, max(2, math.ceil(STEPS * BATCH / max(texts, 1))))


def chosen_settings(config: CompressConfig, rows: int, source_layers: int) -> CompressConfig:
    """`config` with every setting it leaves open chosen for `rows` labelled training texts and a
    source encoder of `source_layers` layers."""
    copies = config.augment_copies if config.augment_copies is not None else augment_copies(rows)
    return replace(
        config,
        layers=config.layers or student_depths(source_layers, config.max_drop),
        heads=config.heads if config.heads is not None else 1.0,
        ffn=config.ffn or student_widths(rows),
        augment_copies=copies,
        distill_epochs=config.distill_epochs
        if config.distill_epochs is not None
        else distill_epochs(rows, copies),
    )


def chosen_image_settings(config: CompressConfig, rows: int) -> CompressConfig:
    """`config` with the distillation epochs chosen for `rows` labelled training images, when left
    open: as for text, about `STEPS` optimizer steps of 32 images (2 to 10 epochs)."""
    if config.distill_epochs is not None:
        return config
    return replace(config, distill_epochs=distill_epochs(rows, copies=0))
