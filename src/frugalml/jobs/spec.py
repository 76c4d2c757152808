"""A job: one frugalml stage command line plus the resources it needs and what it may cost."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from frugalml.errors import FrugalError

# The commands a job may run: stages that end by themselves (`serve` does not, so it is no job).
JOB_COMMANDS = ("tune", "eval", "compress", "label", "predict", "run", "profile")
_RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")


@dataclass
class JobSpec:
    """What to run (`argv`: a frugalml command line without the program name, e.g.
    ["tune", "train.csv", "--method", "lora"]) and on what.

    cpus, gpus: how many the job takes (fractions allowed, as Ray allows them); resources: custom
    resources by name, e.g. {"accel_l4": 1} (Ray only); accelerator_type: a Ray accelerator type
    such as "L4" (Ray only); retries: attempts after the first when one fails (a user error, exit
    status 2, is not retried: it would fail again); backoff_seconds: the wait before the first
    retry, doubled before each next one; estimated_hours and price_per_hour: the job's expected
    run time and its machine's price, for the estimated and actual cost."""

    argv: list[str]
    name: str | None = None
    cpus: float = 1.0
    gpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)
    accelerator_type: str | None = None
    retries: int = 0
    backoff_seconds: float = 1.0
    estimated_hours: float | None = None
    price_per_hour: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.argv, str) or not isinstance(self.argv, list | tuple):
            raise FrugalError(f"a job's argv is a list of words, not {self.argv!r}")
        self.argv = [str(word) for word in self.argv]
        if not self.argv:
            raise FrugalError(f"a job needs a command: one of {', '.join(JOB_COMMANDS)}")
        if self.argv[0] not in JOB_COMMANDS:
            raise FrugalError(
                f"{self.argv[0]!r} cannot run as a job; the commands that can: {', '.join(JOB_COMMANDS)}"
            )
        self.resources = {str(k): float(v) for k, v in dict(self.resources).items()}
        bad_names = [name for name in self.resources if not _RESOURCE_NAME.match(name)]
        if bad_names or "CPU" in self.resources or "GPU" in self.resources:
            raise FrugalError(
                f"bad resource names {bad_names or ['CPU/GPU']}: a name is letters, digits, '_.:-' "
                "(CPUs and GPUs are asked for with cpus and gpus)"
            )
        checks = {
            "cpus": _finite(self.cpus) and self.cpus > 0,
            "gpus": _finite(self.gpus) and self.gpus >= 0,
            "retries": isinstance(self.retries, int) and 0 <= self.retries <= 100,
            "backoff_seconds": _finite(self.backoff_seconds) and self.backoff_seconds >= 0,
            "estimated_hours": self.estimated_hours is None
            or (_finite(self.estimated_hours) and self.estimated_hours >= 0),
            "price_per_hour": self.price_per_hour is None
            or (_finite(self.price_per_hour) and self.price_per_hour >= 0),
        }
        checks |= {f"resources[{name}]": _finite(n) and n > 0 for name, n in self.resources.items()}
        wrong = [name for name, ok in checks.items() if not ok]
        if wrong:
            raise FrugalError(
                f"job settings out of range: {', '.join(wrong)} (cpus > 0, gpus ≥ 0, resources > 0, "
                "0 ≤ retries ≤ 100, backoff_seconds, estimated_hours and price_per_hour ≥ 0)"
            )
        if self.accelerator_type is not None and not _RESOURCE_NAME.match(self.accelerator_type):
            raise FrugalError(f"bad accelerator type {self.accelerator_type!r}")

    @property
    def estimated_cost(self) -> float | None:
        if self.estimated_hours is None or self.price_per_hour is None:
            return None
        return self.estimated_hours * self.price_per_hour

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
