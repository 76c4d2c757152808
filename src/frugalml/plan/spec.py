"""The planner's two input files, JOBS.yaml and CATALOG.yaml, read and checked.

Every mistake (an unknown key, negative work, a job naming a resource the catalogue lacks) is one
FrugalError naming the file and the field, before anything is planned.
"""

from __future__ import annotations

import math
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from frugalml.errors import FrugalError

# Expected preemptions per hour of a spot machine whose row gives no `preemption_per_hour`.
DEFAULT_SPOT_PREEMPTION_PER_HOUR = 0.05


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Job(_Strict):
    name: str = Field(min_length=1)
    stage: str = Field(min_length=1)
    # Run time on a machine of speed 1.0 (the catalogue's reference machine).
    work_hours: float = Field(gt=0, allow_inf_nan=False)
    # Resource names or accelerator types the job may run on; None: any.
    accelerators: tuple[str, ...] | None = None
    memory_gb: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    # The stage's command-line arguments, for `frugalml plan --execute`.
    args: tuple[str, ...] | None = None

    @field_validator("accelerators")
    @classmethod
    def _not_empty(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("an empty list allows no resource: leave the key out to allow any")
        return value


class Resource(_Strict):
    name: str = Field(min_length=1)
    accelerator: str = "none"
    # A number, or a map from stage to number with a `default`.
    speed: float | dict[str, float]
    price_per_hour: float = Field(ge=0, allow_inf_nan=False)
    count: int = Field(ge=1)
    memory_gb: float = Field(gt=0, allow_inf_nan=False)
    spot: bool = False
    preemption_per_hour: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("speed")
    @classmethod
    def _positive_speeds(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        speeds = value if isinstance(value, dict) else {"default": value}
        if "default" not in speeds:
            raise ValueError("a map of speeds needs a `default` for the stages it does not name")
        bad = [stage for stage, speed in speeds.items() if not (math.isfinite(speed) and speed > 0)]
        if bad:
            raise ValueError(f"speeds must be positive numbers (not for {', '.join(bad)})")
        return value

    def speed_for(self, stage: str) -> float:
        if isinstance(self.speed, dict):
            return self.speed.get(stage, self.speed["default"])
        return self.speed

    @property
    def preemption_rate(self) -> float:
        """Expected preemptions per hour: the row's, else a default for spot machines, else 0."""
        if self.preemption_per_hour is not None:
            return self.preemption_per_hour
        return DEFAULT_SPOT_PREEMPTION_PER_HOUR if self.spot else 0.0

    def accepts(self, job: Job) -> bool:
        """Whether `job` may run here: an allowed name or accelerator, and enough memory."""
        allowed = (
            job.accelerators is None
            or self.name in job.accelerators
            or (self.accelerator in job.accelerators)
        )
        return allowed and (job.memory_gb is None or job.memory_gb <= self.memory_gb)


class Catalog(_Strict):
    resources: tuple[Resource, ...] = Field(min_length=1)
    # The resource `frugalml profile` assumes it measures on.
    reference: str | None = None

    def resource(self, name: str) -> Resource:
        for resource in self.resources:
            if resource.name == name:
                return resource
        raise FrugalError(f"no resource named {name!r} in the catalogue (known: {self.names()})")

    def names(self) -> str:
        return ", ".join(r.name for r in self.resources)


class _JobsFile(_Strict):
    jobs: tuple[Job, ...] = Field(min_length=1)


def default_catalog_path() -> Path:
    return Path(str(package_files.files("frugalml.plan").joinpath("catalog.yaml")))


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The catalogue in `path`, or frugalml's default one."""
    path = Path(path) if path is not None else default_catalog_path()
    catalog = _parse(Catalog, path)
    _unique(path, "resources", [r.name for r in catalog.resources])
    if catalog.reference is not None and catalog.reference not in {r.name for r in catalog.resources}:
        raise FrugalError(
            f"{path}: reference: {catalog.reference!r} is no resource (known: {catalog.names()})"
        )
    return catalog


def load_jobs(path: str | Path, catalog: Catalog, catalog_name: str = "the catalogue") -> list[Job]:
    """The jobs in `path`, each checked against `catalog`: every name it allows exists there, and
    at least one resource accepts it."""
    path = Path(path)
    jobs = list(_parse(_JobsFile, path).jobs)
    _unique(path, "jobs", [job.name for job in jobs])
    known = {r.name for r in catalog.resources} | {r.accelerator for r in catalog.resources}
    for i, job in enumerate(jobs):
        where = f"{path}: jobs[{i}] ({job.name}).accelerators"
        missing = [name for name in job.accelerators or () if name not in known]
        if missing:
            raise FrugalError(
                f"{where}: {', '.join(map(repr, missing))} is no resource name or accelerator in "
                f"{catalog_name} (known: {', '.join(sorted(known))})"
            )
        if not any(r.accepts(job) for r in catalog.resources):
            raise FrugalError(
                f"{path}: jobs[{i}] ({job.name}): no resource in {catalog_name} accepts it "
                f"(accelerators {list(job.accelerators or [])}, memory_gb {job.memory_gb})"
            )
    return jobs


def _parse(model: type[Any], path: Path) -> Any:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FrugalError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FrugalError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise FrugalError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(document, dict):
        raise FrugalError(f"{path}: expected a mapping at the top, found {type(document).__name__}")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise FrugalError(f"{path}: {_describe(exc, document)}") from None


def _describe(exc: ValidationError, document: dict) -> str:
    """The first validation error as `field path: message`, the job or resource named."""
    errors = exc.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a typo explains most
    union = [part for part in first["loc"] if part in _UNION_TAGS]
    loc = [part for part in first["loc"] if part not in _UNION_TAGS]
    shown = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            shown += f"[{part}]"
            rows = document.get(str(loc[0])) if i == 1 else None
            row = rows[part] if isinstance(rows, list) and part < len(rows) else None
            name = row.get("name") if isinstance(row, dict) else None
            shown += f" ({name})" if isinstance(name, str) else ""  # the row's name helps find it
        else:
            shown += ("." if shown else "") + str(part)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif union:
        message = "must be a number, or a map from stage to number with a `default`"
    return f"{shown or 'top level'}: {message}"


# Where pydantic names the member of a union that failed (Resource.speed: a number or a map).
_UNION_TAGS = ("float", "dict[str,float]")


def _unique(path: Path, field: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise FrugalError(f"{path}: {field}[{i}].name: {name!r} appears twice")
        seen.add(name)
