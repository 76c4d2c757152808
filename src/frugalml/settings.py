"""Runtime settings, read from FRUGALML_* environment variables."""

from functools import cached_property
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRUGALML_")

    home: Path = Path(".frugalml")  # holds the registry database and the bundle store

    @cached_property
    def bundles_dir(self) -> Path:
        return self.home / "bundles"

    @cached_property
    def registry_path(self) -> Path:
        return self.home / "registry.sqlite"


def get_settings() -> Settings:
    # Re-read each call so that tests and the CLI can change FRUGALML_HOME at run time.
    return Settings()
