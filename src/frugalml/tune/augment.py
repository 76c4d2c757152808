"""Training-time image augmentation with torchvision transforms v2, from a short spec.

A spec is `auto`, `none`, or a comma-separated list of steps, each with an optional amount:
`flip` (horizontal), `vflip`, `rotate[:DEGREES]`, `crop[:MIN_SCALE]` (a random crop of at least
that share of the area, resized back), `jitter[:AMOUNT]` (brightness and contrast by up to
±AMOUNT). `auto` is `flip,rotate:10,crop:0.85,jitter:0.2` for images up to 64 pixels a side and
`flip,rotate:15,crop:0.6,jitter:0.3` for larger ones, where objects move and scale more.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from frugalml.errors import FrugalError

SMALL = 64  # pixels a side: up to here, the gentler `auto` augmentation
AUTO_SMALL = "flip,rotate:10,crop:0.85,jitter:0.2"
AUTO_LARGE = "flip,rotate:15,crop:0.6,jitter:0.3"
# step -> (default amount, the amount's valid range as (low, high), what the amount is)
STEPS: dict[str, tuple[float, tuple[float, float], str]] = {
    "flip": (0.5, (0.0, 1.0), "probability"),
    "vflip": (0.5, (0.0, 1.0), "probability"),
    "rotate": (10.0, (0.0, 180.0), "degrees"),
    "crop": (0.85, (0.05, 1.0), "smallest share of the area"),
    "jitter": (0.2, (0.0, 1.0), "brightness and contrast change"),
}


def parse_augment(spec: str, image_size: int) -> dict[str, float]:
    """The steps of `spec` with their amounts, in spec order."""
    if spec == "auto":
        spec = AUTO_SMALL if image_size <= SMALL else AUTO_LARGE
    if spec == "none":
        return {}
    steps: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, amount = part.partition(":")
        if name not in STEPS:
            raise FrugalError(
                f"unknown augmentation {name!r}; use auto, none or steps among {', '.join(STEPS)}"
            )
        default, (low, high), meaning = STEPS[name]
        try:
            value = float(amount) if amount else default
        except ValueError:
            raise FrugalError(f"augmentation {name}: {amount!r} is not a number ({meaning})") from None
        if not low <= value <= high:
            raise FrugalError(f"augmentation {name}: {meaning} must be in [{low:g}, {high:g}]; got {value:g}")
        steps[name] = value
    return steps


def augmentation(spec: str, image_size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A transform of one uint8 CHW image tensor; None for no augmentation."""
    from frugalml.models.vision import import_torchvision

    steps = parse_augment(spec, image_size)
    if not steps:
        return None
    import_torchvision()
    from torchvision.transforms import v2

    made = {
        "flip": lambda p: v2.RandomHorizontalFlip(p),
        "vflip": lambda p: v2.RandomVerticalFlip(p),
        "rotate": lambda degrees: v2.RandomRotation(degrees),
        "crop": lambda scale: v2.RandomResizedCrop(image_size, scale=(scale, 1.0), ratio=(0.9, 1.1)),
        "jitter": lambda amount: v2.ColorJitter(brightness=amount, contrast=amount),
    }
    return v2.Compose([made[name](amount) for name, amount in steps.items()])
