"""What a pipeline step kind is: the settings it takes, the outputs it gives, how it runs.

Each stage declares its step kinds in its own `steps.py`; `frugalml.pipeline.STEP_KINDS` is the
table of them. Settings are checked when a pipeline file is read, before any step runs, and so
are `${step.key}` references, against the outputs each kind declares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints

from frugalml.errors import FrugalError
from frugalml.progress import Reporter
from frugalml.settings import Settings


@dataclass
class StepContext:
    settings: Settings
    reporter: Reporter | None
    key: str = ""  # the step's cache key: it names the folder a step writes its files to by default
    config: Any = None  # the step's settings as its config dataclass, for a step built on one


StepFunction = Callable[[dict[str, Any], StepContext], dict[str, Any]]


@dataclass(frozen=True)
class StepKind:
    """A step kind. `config` builds the step's config dataclass from its settings: its fields,
    defaults included, stand for those settings in the cache key, so the step reruns when a new
    version changes a default, and not for a default spelled out."""

    run: StepFunction
    required: frozenset[str]  # settings it cannot do without
    optional: frozenset[str]  # every other setting it takes
    outputs: frozenset[str]  # the keys of what `run` returns: what `${step.key}` may name
    config: Callable[[dict[str, Any]], Any] | None = None

    @property
    def allowed(self) -> frozenset[str]:
        return self.required | self.optional


def step_kind(
    run: StepFunction,
    *,
    required: Iterable[str],
    optional: Iterable[str] = (),
    outputs: Iterable[str],
    config: Callable[[dict[str, Any]], Any] | None = None,
) -> StepKind:
    return StepKind(run, frozenset(required), frozenset(optional), frozenset(outputs), config)


# The settings of a step that reads a data file: which of its columns hold what (load_dataset).
COLUMN_KEYS = frozenset({"text_column", "label_column", "id_column"})


def column_settings(args: dict[str, Any]) -> dict[str, Any]:
    """The step's column settings, as load_dataset's keyword arguments."""
    return {k: args[k] for k in COLUMN_KEYS if k in args}


def config_keys(config_type: type) -> set[str]:
    """A config dataclass's fields: the settings a step built on it takes."""
    return {f.name for f in fields(config_type)}


def config_from(args: dict[str, Any], config_type: type) -> Any:
    """A config dataclass from the step settings that are its fields, each of its declared type.
    (Which settings a step takes at all is checked when the pipeline is read: `step`.)"""
    hints = get_type_hints(config_type)
    keys = config_keys(config_type)
    return config_type(**{k: _typed(k, v, hints[k]) for k, v in args.items() if k in keys})


def _typed(name: str, value: Any, hint: Any) -> Any:
    """`value` as the setting's declared type, or a one-line error (YAML gives "3" for '3')."""
    options = get_args(hint) if isinstance(hint, UnionType) else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if option in (int, str, bool) and type(value) is option:
            return value
        if get_origin(option) is tuple and isinstance(value, list | tuple):
            kind = get_args(option)[0]
            if kind is float and all(isinstance(i, int | float) and not isinstance(i, bool) for i in value):
                return tuple(float(item) for item in value)  # YAML's 1 is an int
            if all(type(item) is kind for item in value):
                return tuple(value)
        if option not in (type(None), float, int, str, bool) and get_origin(option) is not tuple:
            return value  # a type this check does not know: the config's own checks apply
    names = {type(None): "null", tuple: "a list"}
    wanted = " or ".join(names.get(get_origin(o) or o, getattr(o, "__name__", str(o))) for o in options)
    raise FrugalError(f"setting {name!r} takes {wanted}, got {value!r}")
