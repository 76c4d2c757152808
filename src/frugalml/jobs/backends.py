"""The table of job backends: where a job's attempts run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from frugalml.jobs import local, ray_backend
from frugalml.jobs.spec import JobSpec
from frugalml.settings import Settings


@dataclass(frozen=True)
class Backend:
    description: str
    check: Callable[[JobSpec, str | None, Settings], None]  # refuses at submission what cannot run
    supervise: Callable[[str], None]  # runs in the job's detached process, sees the job through


BACKENDS: dict[str, Backend] = {
    "local": Backend(
        "a pool of processes on this machine that respects CPU slots", local.check, local.supervise
    ),
    "ray": Backend(
        "a Ray cluster (--address) or a Ray instance started here for the job",
        ray_backend.check,
        ray_backend.supervise,
    ),
}
