"""Terminal rendering for the CLI: rich tables and progress bars, or one JSON document."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from frugalml.progress import Task

# Everything meant for people goes to stderr, so `--json` leaves stdout to the JSON document.
err = Console(stderr=True)
out = Console()


class RichReporter:
    def __init__(self, console: Console = err):
        self.console = console

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Task]:
        columns = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
        ]
        with Progress(*columns, console=self.console, transient=False) as progress:
            task_id = progress.add_task(description, total=total, status="")

            class _Task:
                def advance(self, steps: int = 1, **fields: object) -> None:
                    status = " ".join(f"{k} {v}" for k, v in fields.items())
                    progress.update(task_id, advance=steps, status=status)

            yield _Task()
            if total is None:
                progress.update(task_id, total=1, completed=1)


def command_name() -> str:
    """How the user can invoke this program again: `frugalml` if it is on PATH, else its path."""
    me = Path(sys.argv[0]).resolve()
    found = shutil.which("frugalml")
    if found and Path(found).resolve() == me:
        return "frugalml"
    if not me.exists():
        return "frugalml"
    shown = short_path(me)
    return shown if os.sep in shown else os.path.join(".", shown)  # a bare name is looked up on PATH


def short_path(path: str | Path) -> str:
    """`path` relative to the working folder when it lies inside it (shorter to read and to copy),
    else absolute."""
    relative = os.path.relpath(path)
    climbs = relative == os.pardir or relative.startswith(os.pardir + os.sep)  # not "..name"
    return str(Path(path).resolve()) if climbs else relative


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column, justify="left" if column in ("label", "id", "name", "key") else "right")
    for row in rows:
        # Text, not markup: a cell such as "reset [/b] password" is user data, shown as typed.
        # Folded, not cut with an ellipsis, where a narrow terminal squeezes a column: a path or
        # an id is no use with its end missing.
        result.add_row(*(Text(fmt(v), overflow="fold") for v in row))
    return result


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} GB"


def quiet_libraries() -> None:
    """Silence library chatter (weight-loading bars, deprecation notes) on the user's terminal."""
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
