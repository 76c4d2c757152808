"""YAML pipelines: named steps that chain stages, each skipped when its inputs are unchanged.

    name: quickstart
    steps:
      - id: tune
        tune: {train: data/train.csv, eval: data/test.csv, method: lora}
      - id: eval
        eval: {bundle: "${tune.bundle_id}", data: data/test.csv}

Paths are relative to the pipeline file, also a `base` model or `bundle` given as a local folder.
`${step.key}` refers to an earlier step's output. A step's cache key is the hash of its kind, its
settings (for a step built on a config dataclass, that config with every default filled in, in
place of the settings that are its fields), the content of every file or folder they read and the
frugalml version; a step whose key is in the registry (and whose bundle still loads) is reused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import UnionType
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from frugalml import __version__
from frugalml.bundle import load_bundle
from frugalml.errors import BundleError, FrugalError
from frugalml.hashing import sha256_path
from frugalml.progress import Reporter
from frugalml.settings import Settings, get_settings

REFERENCE = re.compile(r"\$\{([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\}")
PATH_KEYS = {"train", "eval", "data", "labelled", "unlabelled", "pool"}  # files a step reads
OUTPUT_KEYS = {"out", "review", "report"}  # files or folders a step writes
MODEL_KEYS = {"base", "bundle"}  # a model name or bundle id, or a local folder


@dataclass
class StepContext:
    settings: Settings
    reporter: Reporter | None
    key: str = ""  # the step's cache key: it names the folder a step writes its files to by default
    config: Any = None  # the step's settings as its config dataclass, for a step built on one


StepFunction = Callable[[dict[str, Any], StepContext], dict[str, Any]]


@dataclass(frozen=True)
class StepKind:
    run: StepFunction
    required: frozenset[str]  # settings it cannot do without
    allowed: frozenset[str] | None  # every setting it takes, the required ones included; None: any
    config: Callable[[dict[str, Any]], Any] | None = None  # its settings as a config dataclass


STEPS: dict[str, StepKind] = {}


def step(
    kind: str,
    required: Iterable[str] = (),
    optional: Iterable[str] | None = None,
    config: Callable[[dict[str, Any]], Any] | None = None,
) -> Callable[[StepFunction], StepFunction]:
    """Register a pipeline step kind and its settings; later stages add theirs the same way.
    Settings are checked when the pipeline file is read, before any step runs (without
    `optional`, only the required ones). `config` builds the step's config dataclass from its
    settings: its fields, defaults included, stand for those settings in the cache key, so the
    step reruns when a new version changes a default, and not for a default spelled out."""

    def register(function: StepFunction) -> StepFunction:
        allowed = None if optional is None else frozenset(required) | frozenset(optional)
        STEPS[kind] = StepKind(function, frozenset(required), allowed, config)
        return function

    return register


# The settings of a step that reads a data file: which of its columns hold what (load_dataset).
COLUMN_KEYS = frozenset({"text_column", "label_column", "id_column"})


def column_settings(args: dict[str, Any]) -> dict[str, Any]:
    """The step's column settings, as load_dataset's keyword arguments."""
    return {k: args[k] for k in COLUMN_KEYS if k in args}


def config_keys(config_type: type) -> set[str]:
    """A config dataclass's fields: the settings a step built on it takes."""
    return {f.name for f in fields(config_type)}


@dataclass
class StepResult:
    id: str
    kind: str
    outputs: dict[str, Any]
    cached: bool


@dataclass
class PipelineResult:
    name: str
    steps: list[StepResult] = field(default_factory=list)

    def outputs(self, step_id: str) -> dict[str, Any]:
        return next(s.outputs for s in self.steps if s.id == step_id)


def load_pipeline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FrugalError(f"{path}: no such pipeline file")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FrugalError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("steps"), list) or not spec["steps"]:
        raise FrugalError(f"{path}: a pipeline needs a non-empty 'steps' list")
    seen: dict[str, None] = {}  # step ids so far, in order
    for number, entry in enumerate(spec["steps"], 1):
        kinds = [k for k in entry if k != "id"] if isinstance(entry, dict) else []
        if len(kinds) != 1 or kinds[0] not in STEPS:
            raise FrugalError(f"{path}: step {number} must have an id and exactly one of {sorted(STEPS)}")
        if not isinstance(entry[kinds[0]], dict | None):
            raise FrugalError(
                f"{path}: step {number} ({kinds[0]}) takes its settings as a mapping (key: value), "
                f"not {entry[kinds[0]]!r}"
            )
        entry.setdefault("id", kinds[0])
        if entry["id"] in seen:
            raise FrugalError(f"{path}: step id {entry['id']!r} is used twice")
        _check_settings(path, entry["id"], kinds[0], entry[kinds[0]] or {})
        # Checked before anything runs: a typo must not cost the steps before it.
        for ref, key in REFERENCE.findall(_text_of(entry[kinds[0]])):
            if ref not in seen:
                earlier = ", ".join(map(repr, seen)) or "none"
                raise FrugalError(
                    f"{path}: step {entry['id']!r} refers to ${{{ref}.{key}}}, but no earlier step has "
                    f"the id {ref!r} (earlier steps: {earlier})"
                )
        seen[entry["id"]] = None
    return spec


def _check_settings(path: Path, step_id: str, kind: str, settings: dict[str, Any]) -> None:
    known = STEPS[kind]
    missing = sorted(n for n in known.required if settings.get(n) in (None, ""))
    unknown = sorted(set(settings) - known.allowed) if known.allowed is not None else []
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if unknown:
        problems.append(f"unknown setting(s) {unknown}")
    if problems:
        takes = f"; it takes {sorted(known.allowed)}" if known.allowed is not None else ""
        raise FrugalError(f"{path}: step {step_id!r} ({kind}): {', '.join(problems)}{takes}")


def _text_of(value: Any) -> str:
    """Every string in a step's settings, nested ones included, joined."""
    if isinstance(value, dict):
        return " ".join(_text_of(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    return value if isinstance(value, str) else ""


def run_pipeline(
    path: str | Path,
    settings: Settings | None = None,
    reporter: Reporter | None = None,
    force: bool = False,
    on_step: Callable[[StepResult], None] | None = None,
) -> PipelineResult:
    from frugalml import steps as _  # noqa: F401  (registers the built-in step kinds)
    from frugalml.workflows import open_registry

    path = Path(path)
    spec = load_pipeline(path)
    settings = settings or get_settings()
    registry = open_registry(settings)
    context = StepContext(settings, reporter)
    result = PipelineResult(name=spec.get("name", path.stem))
    done: dict[str, dict[str, Any]] = {}
    for entry in spec["steps"]:
        kind = next(k for k in entry if k != "id")
        args = _resolve(entry[kind] or {}, done, path.parent, entry["id"])
        build = STEPS[kind].config
        config = build(args) if build else None  # once: the key and the step share it
        key = _cache_key(kind, args, config)
        outputs = None if force else registry.cached_step(key)
        cached = outputs is not None and _still_valid(outputs)
        if not cached:
            outputs = STEPS[kind].run(args, replace(context, key=key, config=config))
            registry.cache_step(key, kind, outputs)
        step_result = StepResult(entry["id"], kind, outputs, cached)
        result.steps.append(step_result)
        done[entry["id"]] = outputs
        if on_step:
            on_step(step_result)
    return result


def _resolve(
    args: dict[str, Any], done: dict[str, dict[str, Any]], base: Path, step_id: str
) -> dict[str, Any]:
    def substitute(value: Any) -> Any:
        if isinstance(value, str):

            def lookup(match: re.Match) -> str:
                ref, key = match.groups()
                # load_pipeline has checked that `ref` names an earlier step.
                if key not in done[ref]:
                    raise FrugalError(
                        f"step {step_id!r}: unknown reference ${{{ref}.{key}}}; step {ref!r} has the "
                        f"outputs {', '.join(sorted(done[ref]))}"
                    )
                return str(done[ref][key])

            return REFERENCE.sub(lookup, value)
        if isinstance(value, list):
            return [substitute(v) for v in value]
        if isinstance(value, dict):
            return {k: substitute(v) for k, v in value.items()}
        return value

    resolved = {k: substitute(v) for k, v in args.items()}
    for key in (PATH_KEYS | OUTPUT_KEYS) & resolved.keys():
        value = resolved[key]
        if value is not None and not isinstance(value, str):
            raise FrugalError(f"step {step_id!r}: {key!r} is a path, not {value!r}")
        if value and not Path(value).is_absolute():
            resolved[key] = str((base / value).resolve())
    for key in MODEL_KEYS & resolved.keys():  # a folder next to the pipeline, else a name or an id
        value = resolved[key]
        if isinstance(value, str) and value and (base / value).exists():
            resolved[key] = str((base / value).resolve())
    return resolved


def _cache_key(kind: str, args: dict[str, Any], config: Any = None) -> str:
    contents = {
        key: sha256_path(Path(value))
        for key, value in args.items()
        if key in PATH_KEYS | MODEL_KEYS and isinstance(value, str) and value and Path(value).exists()
    }
    key = {"kind": kind, "args": args, "contents": contents, "version": __version__}
    if config is not None:  # it speaks for its fields, defaults included: `seed: 0` or no seed is one key
        key["settings"] = asdict(config)
        key["args"] = {k: v for k, v in args.items() if k not in key["settings"]}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


# Step outputs that name a written file. Not "review": label_auto's is a row count (its file is
# review_out); a new step's file outputs go here, or a deleted one is never noticed.
FILE_OUTPUTS = ("data", "out", "review_out", "report", "tasks", "label_config")


def _still_valid(outputs: dict[str, Any]) -> bool:
    """A cached step is reused only if what it wrote is still there (and bundles still verify).
    A relative path (cached before FRUGALML_HOME was made absolute) would be read from the wrong
    folder by the next step: the step runs again."""
    written = [outputs[k] for k in FILE_OUTPUTS if isinstance(outputs.get(k), str)]
    if not all(Path(p).is_absolute() and Path(p).exists() for p in written):
        return False
    if "bundle_path" not in outputs:
        return True
    try:
        load_bundle(outputs["bundle_path"])
    except BundleError:
        return False
    return True


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
            if all(type(item) is kind for item in value):
                return tuple(value)
        if option not in (type(None), float, int, str, bool) and get_origin(option) is not tuple:
            return value  # a type this check does not know: the config's own checks apply
    names = {type(None): "null", tuple: "a list"}
    wanted = " or ".join(names.get(get_origin(o) or o, getattr(o, "__name__", str(o))) for o in options)
    raise FrugalError(f"setting {name!r} takes {wanted}, got {value!r}")
