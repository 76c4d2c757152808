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
frugalml version; a step whose key is in the lineage store (and whose bundle still loads) is reused.
Where a step computes (`device`) is no input: a step done on a GPU is reused on a CPU and back.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from frugalml import __version__
from frugalml.bundle import load_bundle
from frugalml.compress.steps import COMPRESS
from frugalml.errors import BundleError, FrugalError
from frugalml.evaluate.steps import EVAL
from frugalml.hashing import sha256_path
from frugalml.label.steps import LABEL_AUGMENT, LABEL_AUTO, LABEL_IMPORT, LABEL_ISSUES, LABEL_SUGGEST
from frugalml.lineage import open_store
from frugalml.progress import Reporter
from frugalml.settings import Settings, get_settings
from frugalml.step_kind import StepContext, StepKind
from frugalml.tune.steps import TUNE, TUNE_IMAGES

# Every step kind a pipeline may use, in the order of the data flow.
STEP_KINDS: dict[str, StepKind] = {
    "label_import": LABEL_IMPORT,
    "label_suggest": LABEL_SUGGEST,
    "label_issues": LABEL_ISSUES,
    "label_augment": LABEL_AUGMENT,
    "label_auto": LABEL_AUTO,
    "tune": TUNE,
    "tune_images": TUNE_IMAGES,
    "eval": EVAL,
    "compress": COMPRESS,
}

REFERENCE = re.compile(r"\$\{([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\}")
PATH_KEYS = {"train", "eval", "data", "labelled", "unlabelled", "pool", "weights"}  # files a step reads
OUTPUT_KEYS = {"out", "review", "report"}  # files or folders a step writes
# A file or folder next to the pipeline if there is one, else a model name, a bundle id or an inline
# label list.
LOCAL_OR_NAME_KEYS = {"base", "bundle", "labels"}
MODEL_KEYS = {
    "base",
    "bundle",
}  # their content enters the cache key (a label set does as parsed, in the config)
# Settings that say where a step computes, not what from: left out of the cache key. The same
# inputs give the same results on any device, up to the rounding of its arithmetic.
PLACEMENT_KEYS = {"device"}


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


def load_pipeline(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checked spec, and the config of each step built on one whose settings refer to no
    earlier step (built once here: the run uses it as it is)."""
    if not path.is_file():
        raise FrugalError(f"{path}: no such pipeline file")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FrugalError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("steps"), list) or not spec["steps"]:
        raise FrugalError(f"{path}: a pipeline needs a non-empty 'steps' list")
    seen: dict[str, str] = {}  # step id -> kind, for the steps so far, in order
    configs: dict[str, Any] = {}
    for number, entry in enumerate(spec["steps"], 1):
        kinds = [k for k in entry if k != "id"] if isinstance(entry, dict) else []
        if len(kinds) != 1 or kinds[0] not in STEP_KINDS:
            raise FrugalError(
                f"{path}: step {number} must have an id and exactly one of {sorted(STEP_KINDS)}"
            )
        if not isinstance(entry[kinds[0]], dict | None):
            raise FrugalError(
                f"{path}: step {number} ({kinds[0]}) takes its settings as a mapping (key: value), "
                f"not {entry[kinds[0]]!r}"
            )
        entry.setdefault("id", kinds[0])
        if entry["id"] in seen:
            raise FrugalError(f"{path}: step id {entry['id']!r} is used twice")
        _check_settings(path, entry["id"], kinds[0], entry[kinds[0]] or {})
        config, whole = _check_config(path, entry["id"], kinds[0], entry[kinds[0]] or {})
        if whole:
            configs[entry["id"]] = config
        # Checked before anything runs: a typo must not cost the steps before it.
        for ref, key in REFERENCE.findall(_text_of(entry[kinds[0]])):
            if ref not in seen:
                earlier = ", ".join(map(repr, seen)) or "none"
                raise FrugalError(
                    f"{path}: step {entry['id']!r} refers to ${{{ref}.{key}}}, but no earlier step has "
                    f"the id {ref!r} (earlier steps: {earlier})"
                )
            outputs = STEP_KINDS[seen[ref]].outputs
            if key not in outputs:
                raise FrugalError(
                    f"{path}: step {entry['id']!r} refers to ${{{ref}.{key}}}, but a {seen[ref]} step has "
                    f"no output {key!r}; it has {', '.join(sorted(outputs))}"
                )
        seen[entry["id"]] = kinds[0]
    return spec, configs


def _check_settings(path: Path, step_id: str, kind: str, settings: dict[str, Any]) -> None:
    known = STEP_KINDS[kind]
    missing = sorted(n for n in known.required if settings.get(n) in (None, ""))
    unknown = sorted(set(settings) - known.allowed)
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if unknown:
        problems.append(f"unknown setting(s) {unknown}")
    if problems:
        raise FrugalError(
            f"{path}: step {step_id!r} ({kind}): {', '.join(problems)}; it takes {sorted(known.allowed)}"
        )


def _check_config(path: Path, step_id: str, kind: str, settings: dict[str, Any]) -> tuple[Any, bool]:
    """Build the step's config from the settings that refer to no earlier step, so an
    out-of-range value is refused before any step runs. Returns it, and whether those were all
    of its settings (then it is the step's config)."""
    build = STEP_KINDS[kind].config
    if build is None:
        return None, True
    known = {k: v for k, v in settings.items() if not REFERENCE.search(_text_of(v))}
    whole = len(known) == len(settings)
    try:
        config = build(_resolve(known, {}, path.parent, step_id))
    except FrugalError as exc:
        raise FrugalError(f"{path}: step {step_id!r} ({kind}): {exc}") from None
    except TypeError:  # a setting without a default comes from an earlier step: checked when it runs
        if whole:
            raise
        return None, False
    return config, whole


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
    path = Path(path)
    spec, configs = load_pipeline(path)
    settings = settings or get_settings()
    lineage = open_store(settings)
    context = StepContext(settings, reporter)
    result = PipelineResult(name=spec.get("name", path.stem))
    done: dict[str, dict[str, Any]] = {}
    for entry in spec["steps"]:
        kind = next(k for k in entry if k != "id")
        args = _resolve(entry[kind] or {}, done, path.parent, entry["id"])
        build = STEP_KINDS[kind].config
        # Once: the key and the step share it; built at load unless a setting names an earlier step.
        config = configs[entry["id"]] if entry["id"] in configs else build(args) if build else None
        key = _cache_key(kind, args, config)
        outputs = None if force else lineage.cached_step(key)
        cached = outputs is not None and _still_valid(outputs)
        if outputs is None or not cached:  # the same test; `outputs is None` narrows the type
            outputs = STEP_KINDS[kind].run(args, replace(context, key=key, config=config))
            _check_outputs(kind, outputs)
            lineage.cache_step(key, kind, outputs)
        step_result = StepResult(entry["id"], kind, outputs, cached)
        result.steps.append(step_result)
        done[entry["id"]] = outputs
        if on_step:
            on_step(step_result)
    return result


def _check_outputs(kind: str, outputs: dict[str, Any]) -> None:
    """A step returns exactly the outputs its kind declares: references were checked against them."""
    declared = STEP_KINDS[kind].outputs
    if set(outputs) != declared:
        raise RuntimeError(
            f"step kind {kind} returned outputs {sorted(outputs)}, but declares {sorted(declared)}"
        )


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
    for key in LOCAL_OR_NAME_KEYS & resolved.keys():  # a folder next to the pipeline, else a name or an id
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
    args = {k: v for k, v in args.items() if k not in PLACEMENT_KEYS}
    key = {"kind": kind, "args": args, "contents": contents, "version": __version__}
    if config is not None:  # it speaks for its fields, defaults included: `seed: 0` or no seed is one key
        fields = asdict(config)
        key["settings"] = {k: v for k, v in fields.items() if k not in PLACEMENT_KEYS}
        key["args"] = {k: v for k, v in args.items() if k not in fields}
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
