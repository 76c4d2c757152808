"""Progress reporting that the library emits and the CLI renders (silent by default)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Task(Protocol):
    def advance(self, steps: int = 1, **fields: object) -> None: ...


class Reporter(Protocol):
    def task(self, description: str, total: int | None) -> AbstractContextManager[Task]: ...


class _SilentTask:
    def advance(self, steps: int = 1, **fields: object) -> None:
        pass


class SilentReporter:
    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        yield _SilentTask()
