"""Runtime settings, read from FRUGALML_* environment variables."""

import os
from functools import cached_property
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from frugalml.errors import FrugalError

# How PyTorch's OpenMP threads wait between operations, for `serve` and for compress's
# measurements: a short spin, then sleep. Spinning threads can starve an event loop on shared
# cores; sleeping at once makes each operation of a two-thread call wait for a wake-up
# (bench/openmp_wait.py). GNU OpenMP, as in PyTorch's wheels, takes GOMP_SPINCOUNT over
# PASSIVE's zero spin. Set before torch is imported; a value the user set wins.
INFERENCE_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRUGALML_")

    home: Path = Path(".frugalml")  # holds the lineage store and the bundles
    # CPU slots of the local job pool: local jobs run while their `cpus` add up to no more.
    job_slots: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)

    @field_validator("home")
    @classmethod
    def _absolute(cls, home: Path) -> Path:
        # Absolute from the start: paths under it are handed on (pipeline step outputs, run
        # configs) and read again from other folders, where a relative one names another file.
        return home.expanduser().resolve()

    @cached_property
    def bundles_dir(self) -> Path:
        return self.home / "bundles"

    @cached_property
    def jobs_dir(self) -> Path:
        """One folder per job: its attempts' logs."""
        return self.home / "jobs"

    @cached_property
    def lineage_path(self) -> Path:
        return self.home / "lineage.sqlite"


def get_settings() -> Settings:
    # Re-read each call so that tests and the CLI can change FRUGALML_HOME at run time.
    try:
        return Settings()
    except ValidationError as exc:  # a bad FRUGALML_* variable: one line, not a traceback
        wrong = "; ".join(
            f"FRUGALML_{'_'.join(map(str, e['loc'])).upper()}={e['input']!r}: {e['msg']}"
            for e in exc.errors()
        )
        raise FrugalError(f"bad setting {wrong}") from None
