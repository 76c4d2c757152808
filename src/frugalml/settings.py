"""Runtime settings, read from FRUGALML_* environment variables."""

from functools import cached_property
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# How PyTorch's OpenMP threads wait for work between operations, for `serve` and for compress's
# measurements of what will be served. By default they spin (GNU OpenMP: up to 300,000 rounds);
# beside an event loop on shared cores that starved the very threads they wait for in one early
# run (a lone MiniLM call took 490 ms instead of 17 ms on a busy 2-core machine, commit 8a84022;
# no bench reproduces it, and on an idle machine the default is as fast). Sleeping at once (PASSIVE)
# fixes that, but then every operation of a two-thread call waits for a sleeping thread to wake,
# and a lone call on two threads was slower than on one. A short spin first (GOMP_SPINCOUNT: GNU
# OpenMP, as in PyTorch's wheels, takes it over PASSIVE's zero) keeps those wake-ups cheap
# (bench/openmp_wait.py). Set before torch is imported; a value the user set wins.
INFERENCE_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRUGALML_")

    home: Path = Path(".frugalml")  # holds the lineage store and the bundles

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
    def lineage_path(self) -> Path:
        return self.home / "lineage.sqlite"


def get_settings() -> Settings:
    # Re-read each call so that tests and the CLI can change FRUGALML_HOME at run time.
    return Settings()
