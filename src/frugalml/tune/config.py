"""Tuning settings: the only copy of each default, checked where they are built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from frugalml.devices import parse_device
from frugalml.errors import FrugalError, check_ranges
from frugalml.evaluate.perturb import parse_spec
from frugalml.tune.adapter import PLACEMENTS
from frugalml.tune.adversarial import ATTACKS
from frugalml.tune.methods import METHODS, get_method

CLASS_WEIGHTS = (None, "balanced")
# `--robust`: noisy copies of the training rows and a wider LoRA, the recipe bench/methods.py
# measured best against typos (docs/tuning.md); the settings the user gives win over these.
ROBUST: dict[str, Any] = {"noise": "typos:0.1", "noise_copies": 2, "lora_r": 32}
MAX_NOISE_COPIES = 10
LORA_RANK = 16
NOISE_COPIES = 1  # noisy copies of each training row when `noise` is set without a count
LORA_VARIANTS = ("lora", "dora", "rslora")


@dataclass
class TuneConfig:
    method: str = "head"
    base: str = "minilm"
    epochs: int | None = None  # None = by data size: 3 for 10k rows, up to 10 for a few hundred
    lr: float | None = None  # encoder learning rate; None = the method's default
    head_lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    val_fraction: float = 0.1
    patience: int = 1  # stop after this many epochs plus one without a lower validation loss
    max_length: int = 128
    warmup: float = 0.1
    weight_decay: float = 0.01
    head_c: float | None = None  # logistic-regression C; None = pick on validation
    lora_r: int | None = None  # None: LORA_RANK, or ROBUST's with `robust`
    lora_alpha: float | None = None  # None: 2 x lora_r
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"  # or module names, comma-separated (e.g. "query,value")
    ia3_targets: str = "key,value,output.dense"  # module names, comma-separated, by suffix
    lora_variant: str = "lora"  # dora: weight-decomposed; rslora: alpha / sqrt(r) scaling
    prompt_length: int = 8  # method prompt: soft prompt vectors before every text
    prefix_length: int = 16  # method prefix: trained keys and values per attention layer
    prefix_mlp: int = 0  # method prefix: hidden width of the reparameterisation MLP; 0 = none
    adapter_reduction: int = 16  # method adapter: hidden size / bottleneck size
    adapter_placement: str = "pfeiffer"  # after the FFN; houlsby: after attention too
    class_weight: str | None = None  # "balanced": every class weighs the same in total
    # Adversarial training on the word embeddings (tune/adversarial.py): fgm | pgd | freelb | None;
    # epsilon bounds each example's perturbation (L2), steps is PGD's and FreeLB's ascent steps.
    adversarial: str | None = None
    adv_epsilon: float = 1.0
    adv_steps: int = 3
    # Training on noise (evaluate/perturb.py): `noise_copies` noisy copies of every training row
    # (never of the validation rows), with the noise `noise` names ("typos:0.1", "words:0.05").
    noise: str | None = None
    noise_copies: int | None = None  # None: NOISE_COPIES, or ROBUST's with `robust`
    # Instead of copies: each epoch, this share of the training rows is swapped for a freshly
    # noised version, so every epoch sees other typos and the clean rows stay as many as they are.
    noise_share: float | None = None
    robust: bool = False  # the ROBUST recipe, for settings not given
    # Transfer (tune/transfer.py): the id of a registered bundle whose encoder and method weights
    # this run starts from, instead of the base's.
    parent: str | None = None

    def __post_init__(self):
        method = get_method(self.method)
        if self.robust:
            self.noise = self.noise or str(ROBUST["noise"])
            if self.noise_copies is None and self.noise_share is None:
                self.noise_copies = ROBUST.get("noise_copies")
                self.noise_share = ROBUST.get("noise_share")
            if self.lora_r is None:  # a wider LoRA learns the noise and keeps the clean text
                self.lora_r = ROBUST.get("lora_r")
        if self.lora_r is None:
            self.lora_r = LORA_RANK
        if self.lora_alpha is None:  # the update scaled by alpha / r = 2 at every rank
            self.lora_alpha = 2 * self.lora_r
        if self.noise is not None:
            parse_spec(self.noise)
            if self.noise_copies is not None and self.noise_share is not None:
                raise FrugalError(
                    "give noise_copies (fixed noisy copies of every row) or noise_share (fresh "
                    "noise on a share of the rows each epoch), not both"
                )
            if self.noise_copies is None and self.noise_share is None:
                self.noise_copies = NOISE_COPIES
        elif self.noise_copies is not None or self.noise_share is not None:
            raise FrugalError(
                "noise_copies and noise_share say how to train on noise: give noise too (e.g. typos:0.1)"
            )
        if self.adversarial is not None:
            if self.adversarial not in ATTACKS:
                raise FrugalError(
                    f"unknown adversarial training {self.adversarial!r}; choose one of {', '.join(ATTACKS)}"
                )
            if not method.trains_encoder:
                training = ", ".join(m.name for m in METHODS.values() if m.trains_encoder)
                raise FrugalError(
                    f"adversarial training perturbs the encoder's inputs while it trains; method "
                    f"{self.method!r} trains only the head (choose one of {training})"
                )
        if self.class_weight not in CLASS_WEIGHTS:
            named = " or ".join(repr(w) for w in CLASS_WEIGHTS if w)
            raise FrugalError(
                f"class weight must be {named}, or none (every row weighs the same); "
                f"got {self.class_weight!r}"
            )
        if self.lora_variant not in LORA_VARIANTS:
            raise FrugalError(
                f"LoRA variant must be one of {', '.join(LORA_VARIANTS)}; got {self.lora_variant!r}"
            )
        if self.adapter_placement not in PLACEMENTS:
            raise FrugalError(
                f"adapter placement must be one of {', '.join(PLACEMENTS)}; got {self.adapter_placement!r}"
            )
        checks = {
            "batch_size": (self.batch_size >= 1, "batch_size >= 1"),
            "seed": (0 <= self.seed < 2**32, "0 <= seed < 2**32"),
            "max_length": (self.max_length >= 2, "max_length >= 2"),
            "val_fraction": (0 < self.val_fraction < 1, "0 < val_fraction < 1"),
            "epochs": (self.epochs is None or self.epochs >= 0, "epochs >= 0"),
            "lr": (self.lr is None or self.lr > 0, "lr > 0"),
            "head_lr": (self.head_lr > 0, "head_lr > 0"),
            "head_c": (self.head_c is None or self.head_c > 0, "head_c > 0"),
            "patience": (self.patience >= 0, "patience >= 0"),
            "warmup": (0 <= self.warmup < 1, "0 <= warmup < 1"),
            "weight_decay": (self.weight_decay >= 0, "weight_decay >= 0"),
            "lora_r": (self.lora_r >= 1, "lora_r >= 1"),
            "lora_alpha": (self.lora_alpha > 0, "lora_alpha > 0"),
            "lora_dropout": (0 <= self.lora_dropout < 1, "0 <= lora_dropout < 1"),
            "adv_epsilon": (self.adv_epsilon > 0, "adv_epsilon > 0"),
            "adv_steps": (self.adv_steps >= 1, "adv_steps >= 1"),
            "prompt_length": (self.prompt_length >= 1, "prompt_length >= 1"),
            "prefix_length": (self.prefix_length >= 1, "prefix_length >= 1"),
            "prefix_mlp": (self.prefix_mlp >= 0, "prefix_mlp >= 0 (0: none)"),
            "adapter_reduction": (self.adapter_reduction >= 1, "adapter_reduction >= 1"),
            "noise_copies": (
                self.noise_copies is None or 1 <= self.noise_copies <= MAX_NOISE_COPIES,
                f"1 <= noise_copies <= {MAX_NOISE_COPIES}",
            ),
            "noise_share": (self.noise_share is None or 0 < self.noise_share <= 1, "0 < noise_share <= 1"),
        }
        check_ranges("tune", self, checks)


BACKENDS = ("local", "ray")


@dataclass
class TuneCompute:
    """Where and how a tune run computes. Kept apart from `TuneConfig`: the same settings on other
    hardware make the same model (within float noise), so none of this enters a run's identity,
    the pipeline's cache key or the bundle's config."""

    device: str | None = None  # auto | cpu | cuda[:N] | mps; None = auto
    workers: int = 1  # data-parallel processes (torch.distributed DDP)
    backend: str = "local"  # local: processes on this machine; ray: Ray Train workers
    address: str | None = None  # Ray cluster address; None = start a local Ray instance
    checkpoint_every: int = 200  # optimizer steps between checkpoints; 0 = never

    def __post_init__(self):
        self.device = parse_device(self.device)
        if self.backend not in BACKENDS:
            raise FrugalError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.address is not None and self.backend != "ray":
            raise FrugalError("--address names a Ray cluster: use it with --backend ray")
        checks = {
            "workers": (self.workers >= 1, "workers >= 1"),
            "checkpoint_every": (self.checkpoint_every >= 0, "checkpoint_every >= 0"),
        }
        check_ranges("tune", self, checks)


IMAGE_CLASS_WEIGHTS = ("auto", "balanced", None)


@dataclass
class ImageTuneConfig:
    """Settings of an image classifier trained from scratch (or from a local weights file)."""

    model: str | None = None  # cnn | resnet18 | mobilenet_v3_small; None = by image size
    image_size: int | None = None  # resize to this square size; None = the data's own (one size)
    mode: str | None = None  # L | RGB; None = the mode most images have
    weights: str | None = None  # a local weights file to start from (models/vision.load_weights)
    epochs: int | None = None  # None = by data size: 30 for 5k images, fewer for more
    lr: float = 3e-3  # AdamW's peak, after a linear warm-up, decayed on a cosine
    weight_decay: float = 5e-4
    batch_size: int = 128
    seed: int = 0
    val_fraction: float = 0.1  # held out when the data has no validation split of its own
    patience: int = 8  # stop after this many epochs without a better validation loss
    class_weight: str | None = "auto"  # balanced: every class weighs the same; auto: when skewed
    augment: str = "auto"  # tune/augment.py: auto | none | flip,rotate:DEG,crop:SCALE,jitter:AMOUNT
    label_smoothing: float = 0.05

    def __post_init__(self):
        from frugalml.models.vision import ARCHITECTURES
        from frugalml.tune.augment import parse_augment

        if self.model is not None and self.model not in ARCHITECTURES:
            raise FrugalError(f"unknown image model {self.model!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.mode not in (None, "L", "RGB"):
            raise FrugalError(f"image mode must be L (greyscale) or RGB; got {self.mode!r}")
        if self.class_weight not in IMAGE_CLASS_WEIGHTS:
            raise FrugalError(f"class weight must be auto, balanced or none; got {self.class_weight!r}")
        parse_augment(self.augment, 32)
        checks = {
            "image_size": (
                self.image_size is None or 8 <= self.image_size <= 1024,
                "8 <= image_size <= 1024",
            ),
            "epochs": (self.epochs is None or self.epochs >= 1, "epochs >= 1"),
            "lr": (self.lr > 0, "lr > 0"),
            "weight_decay": (self.weight_decay >= 0, "weight_decay >= 0"),
            "batch_size": (self.batch_size >= 2, "batch_size >= 2"),
            "seed": (0 <= self.seed < 2**32, "0 <= seed < 2**32"),
            "val_fraction": (0 < self.val_fraction < 1, "0 < val_fraction < 1"),
            "patience": (self.patience >= 0, "patience >= 0"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "0 <= label_smoothing < 1"),
        }
        check_ranges("tune", self, checks)
