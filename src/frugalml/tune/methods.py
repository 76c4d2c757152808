"""Tuning methods, one entry each: which parameters train and how (PEFT where it applies)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from frugalml.errors import FrugalError
from frugalml.tune.adapter import prepare_adapter, prepare_prefix, prepare_prompt

if TYPE_CHECKING:
    from peft import PeftConfig

    from frugalml.tune.config import TuneConfig


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    prepare: Callable[[nn.Module, dict], nn.Module]  # returns the model to train
    encoder_lr: float  # default learning rate of the encoder's trainable parameters
    trains_encoder: bool = True
    changes_outputs: bool = False  # the new weights change the encoder's outputs before training
    decays: bool = True  # weight decay applies to the encoder's trainable parameters

    def encoder_optimizer(self, config: TuneConfig) -> tuple[float, float]:
        """Learning rate and weight decay of the encoder's trainable parameters under `config`."""
        return (
            config.lr if config.lr is not None else self.encoder_lr,
            config.weight_decay if self.decays else 0.0,
        )


def _head(model: nn.Module, options: dict) -> nn.Module:
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("classifier.")
    return model


def _full(model: nn.Module, options: dict) -> nn.Module:
    for param in model.parameters():
        param.requires_grad = True
    return model


def _peft(config_factory: Callable[[dict], PeftConfig]) -> Callable[[nn.Module, dict], nn.Module]:
    def prepare(model: nn.Module, options: dict) -> nn.Module:
        from peft import get_peft_model

        _check_targets(model, options["method"], options[f"{options['method']}_targets"])
        return get_peft_model(model, config_factory(options))

    return prepare


def _lora_config(options: dict) -> PeftConfig:
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=options["lora_r"],
        lora_alpha=options["lora_alpha"],
        lora_dropout=options["lora_dropout"],
        # "all-linear": every Linear of the encoder; the head is saved whole
        target_modules=target_names(options["lora_targets"]),
        use_dora=options["lora_variant"] == "dora",
        use_rslora=options["lora_variant"] == "rslora",
        modules_to_save=["classifier"],
    )


def target_names(targets: str) -> str | list[str]:
    """`--targets`: "all-linear", or module names separated by commas (matched by suffix)."""
    return targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]


def _check_targets(model: nn.Module, method: str, given: str) -> None:
    """One line naming the targets no Linear of the encoder matches, and the names there are."""
    targets = target_names(given)
    if isinstance(targets, str):
        if method == "ia3":  # PEFT's IA3 needs to know which targets are feed-forward: names only
            raise FrugalError("IA3 targets are module names, comma-separated (e.g. key,value,output.dense)")
        return
    names = [
        n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not n.startswith("classifier")
    ]
    unknown = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unknown or not targets:
        known = sorted({n.rsplit(".", 1)[-1] for n in names} | {"attention.output.dense", "output.dense"})
        raise FrugalError(
            f"unknown {'LoRA' if method == 'lora' else 'IA3'} target {', '.join(unknown) or repr(given)}; "
            f"choose {'all-linear or ' if method == 'lora' else ''}among {', '.join(known)} (comma-separated)"
        )


def _ia3_config(options: dict) -> PeftConfig:
    from peft import IA3Config, TaskType

    targets = target_names(options["ia3_targets"])
    return IA3Config(
        task_type=TaskType.SEQ_CLS,
        # By default "output.dense" matches the FFN's and the attention's output projections (by
        # suffix): IA3 scales the input of each (feed-forward targets), and the keys and values.
        target_modules=targets,
        feedforward_modules=[t for t in targets if t.endswith(FEEDFORWARD)],
        modules_to_save=["classifier"],
    )


FEEDFORWARD = "output.dense"  # IA3 targets whose input, not output, is scaled


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("head", "frozen encoder, trained classifier head", _head, 0.0, trains_encoder=False),
        Method(
            "lora", "LoRA (or DoRA, rsLoRA) on the encoder's Linears (PEFT) + head", _peft(_lora_config), 5e-4
        ),
        Method("ia3", "IA3 scaling vectors (PEFT) on --targets + head", _peft(_ia3_config), 3e-3),
        Method("full", "every parameter trained", _full, 8e-5),
        # No decay at 0.3 (Lester et al. use 1e-5): AdamW's decoupled decay, lr x 0.01 a step, would
        # pull the prompt to a quarter of its size over 3 epochs of 10k rows, whatever it learnt.
        Method(
            "prompt",
            "soft prompt before every text + head",
            prepare_prompt,
            0.3,
            changes_outputs=True,
            decays=False,
        ),
        Method(
            "prefix",
            "trained keys and values in every attention layer + head",
            prepare_prefix,
            1e-2,
            changes_outputs=True,
        ),
        Method("adapter", "bottleneck adapters in every layer + head", prepare_adapter, 1e-3),
    ]
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise FrugalError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
