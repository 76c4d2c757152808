"""Image classifiers: a small CNN baseline and torchvision architectures, trained from scratch or
from a local weights file, and the bundle files that hold them.

Every model is an `ImageClassifier`: `features(x)` maps float32 NCHW input (`preprocess`'s) to
the penultimate-layer embedding, `head` maps that to logits, and `forward` is the two in turn.
An image bundle holds `model.safetensors` (the state dict) and `image_config.json`
(`ImageModelConfig`: architecture, classes, channels, size, normalisation); labels are in
bundle.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from frugalml.bundle import IMAGE_TASK, Bundle, require_only_listed_files
from frugalml.errors import BundleError, FrugalError, first_line
from frugalml.models.shapes import fit_shapes

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "image_config.json"
SMALL_INPUT = 64  # up to this many pixels a side, torchvision stems keep full resolution


def import_torchvision() -> None:
    """torchvision (frugalml[vision]), or a FrugalError that says how to install it."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        raise FrugalError(
            "torchvision is not installed: pip install 'frugalml[vision]' for torchvision models "
            "and augmentation"
        ) from None


@dataclass
class ImageModelConfig:
    architecture: str
    num_classes: int
    channels: int
    image_size: int
    mean: list[float] = field(default_factory=list)  # per channel, of pixels scaled to [0, 1]
    std: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise FrugalError(
                f"unknown image model {self.architecture!r}; choose one of {', '.join(ARCHITECTURES)}"
            )
        if self.channels not in (1, 3):
            raise FrugalError(f"images have 1 or 3 channels, not {self.channels}")
        self.mean = self.mean or [0.5] * self.channels
        self.std = self.std or [0.25] * self.channels
        if len(self.mean) != self.channels or len(self.std) != self.channels or min(self.std) <= 0:
            raise FrugalError("mean and std need one value per channel, std > 0")
        if self.num_classes < 2 or self.image_size < 8:
            raise FrugalError("an image model needs at least 2 classes and images of 8 pixels a side")


class ImageClassifier(nn.Module):
    """`body` (input -> embedding) and a linear `head` (embedding -> logits)."""

    def __init__(self, body: nn.Module, width: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.body = body
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)
        self.width = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer embedding, (N, width)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def _block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


def small_cnn(num_classes: int, channels: int, image_size: int) -> ImageClassifier:
    """Three VGG-style stages (16, 32, 64 channels), the first two halving the resolution, then
    global average pooling: ~72k parameters, any input size of 8 pixels or more. Larger inputs
    are first cut to at most 64 pixels a side by a strided stem, so cost stays bounded."""
    stem: list[nn.Module] = []
    size, width = image_size, channels
    while size > SMALL_INPUT:  # a 2x2-strided convolution per halving
        stem += [nn.Conv2d(width, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(True)]
        size, width = (size + 1) // 2, 16
    body = nn.Sequential(
        *stem,
        _block(width, 16),
        nn.MaxPool2d(2),
        _block(16, 32),
        nn.MaxPool2d(2),
        _block(32, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return ImageClassifier(body, 64, num_classes, dropout=0.2)


def resnet18(num_classes: int, channels: int, image_size: int) -> ImageClassifier:
    """torchvision's ResNet-18; on small inputs (<= 64 pixels) its stem is a 3x3 stride-1
    convolution without max pooling, as for CIFAR, so 28-pixel images are not cut to 7."""
    import_torchvision()
    from torchvision.models import resnet18 as build

    model = build(weights=None)
    if channels != 3 or image_size <= SMALL_INPUT:
        small = image_size <= SMALL_INPUT
        model.conv1 = nn.Conv2d(
            channels, 64, 3 if small else 7, 1 if small else 2, 1 if small else 3, bias=False
        )
        if small:
            model.maxpool = nn.Identity()
    width = model.fc.in_features
    model.fc = nn.Identity()
    return ImageClassifier(model, width, num_classes)


def mobilenet_v3_small(num_classes: int, channels: int, image_size: int) -> ImageClassifier:
    """torchvision's MobileNetV3-Small; on small inputs its first convolution keeps stride 1."""
    import_torchvision()
    from torchvision.models import mobilenet_v3_small as build

    model = build(weights=None)
    first: nn.Conv2d = model.features[0][0]
    if channels != 3 or image_size <= SMALL_INPUT:
        stride = 1 if image_size <= SMALL_INPUT else 2
        model.features[0][0] = nn.Conv2d(channels, first.out_channels, 3, stride, 1, bias=False)
    last: nn.Linear = model.classifier[-1]
    model.classifier[-1] = nn.Identity()
    return ImageClassifier(model, last.in_features, num_classes)


# architecture -> builder(num_classes, channels, image_size)
ARCHITECTURES: dict[str, Callable[[int, int, int], ImageClassifier]] = {
    "cnn": small_cnn,
    "resnet18": resnet18,
    "mobilenet_v3_small": mobilenet_v3_small,
}


def default_architecture(image_size: int) -> str:
    """The small CNN up to 64 pixels a side (MedMNIST's 28 among them), ResNet-18 beyond."""
    return "cnn" if image_size <= SMALL_INPUT else "resnet18"


def build_image_model(
    architecture: str, num_classes: int, channels: int, image_size: int, weights: str | Path | None = None
) -> ImageClassifier:
    """A new model; with `weights` (a local .safetensors or PyTorch state-dict file, say
    torchvision's ImageNet weights) every tensor whose name and shape fit is loaded."""
    ImageModelConfig(architecture, num_classes, channels, image_size)  # checks the arguments
    model = ARCHITECTURES[architecture](num_classes, channels, image_size)
    if weights is not None:
        load_weights(model, Path(weights))
    return model


def load_weights(model: ImageClassifier, path: Path) -> int:
    """Load the tensors of `path` that fit `model` (named as in the model, or as in its
    torchvision `body`); the number loaded. Refused when none fits."""
    if not path.is_file():
        raise FrugalError(f"{path}: no such weights file")
    state: Any
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many kinds for a bad file
        raise FrugalError(f"{path}: cannot be read as weights ({first_line(exc)})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = model.state_dict()
    fitting = {}
    for name, tensor in (state or {}).items():
        for key in (name, f"body.{name}"):
            if key in own and isinstance(tensor, torch.Tensor) and own[key].shape == tensor.shape:
                fitting[key] = tensor
                break
    if not fitting:
        raise FrugalError(f"{path}: none of its tensors fits the {type(model.body).__name__} model")
    model.load_state_dict(fitting, strict=False)
    return len(fitting)


def preprocess(images: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """uint8 NHWC pixels -> float32 NCHW model input: scaled to [0, 1], then normalised per channel."""
    scale = np.float32(1 / 255)
    x = images.transpose(0, 3, 1, 2).astype(np.float32) * scale
    mean_ = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    std_ = np.asarray(std, dtype=np.float32)[None, :, None, None]
    return np.ascontiguousarray((x - mean_) / std_)


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 NHWC pixels scaled to [0, 1] (a set's normalisation)."""
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255
    std = np.maximum(pixels.std(axis=0), 1e-3)
    return [round(float(v), 6) for v in pixels.mean(axis=0)], [round(float(v), 6) for v in std]


def save_image_model(folder: Path, model: nn.Module, config: ImageModelConfig) -> None:
    """Write `model.safetensors` and `image_config.json` into a bundle folder being populated."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=2) + "\n")


def load_image_config(bundle: Bundle) -> ImageModelConfig:
    assert bundle.path is not None
    require_only_listed_files(bundle)
    try:
        return ImageModelConfig(**json.loads((bundle.path / CONFIG_FILE).read_text()))
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle.id}: has no {CONFIG_FILE}") from None
    except (ValueError, TypeError, FrugalError) as exc:
        raise BundleError(f"bundle {bundle.id}: {CONFIG_FILE} is malformed ({first_line(exc)})") from None


def load_image_model(bundle: Bundle) -> tuple[ImageClassifier, ImageModelConfig]:
    """The bundle's model (in eval mode, on the CPU) and its config."""
    assert bundle.path is not None
    if bundle.task != IMAGE_TASK:
        raise BundleError(f"bundle {bundle.id} is a {bundle.task} model, not an {IMAGE_TASK} one")
    config = load_image_config(bundle)
    if config.num_classes != len(bundle.labels):
        raise BundleError(
            f"bundle {bundle.id}: {CONFIG_FILE} has {config.num_classes} classes, bundle.json "
            f"{len(bundle.labels)} labels"
        )
    model = ARCHITECTURES[config.architecture](config.num_classes, config.channels, config.image_size)
    try:
        state = load_file(str(bundle.path / WEIGHTS_FILE))
        if "prune" in bundle.config.get("techniques", []):  # channel pruning made its layers smaller
            fit_shapes(model, state)
        model.load_state_dict(state)
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle.id}: has no {WEIGHTS_FILE}") from None
    except (RuntimeError, OSError) as exc:
        raise BundleError(
            f"bundle {bundle.id}: {WEIGHTS_FILE} does not fit its model ({first_line(exc)})"
        ) from None
    return model.eval(), config
