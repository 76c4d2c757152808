"""The `frugalml` command: parse arguments, call the library, render the result.

One module per stage registers its commands on `app`; keep each one thin.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Annotated

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.markup import escape

from frugalml import ui
from frugalml.errors import FrugalError

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
TextColumn = Annotated[str | None, typer.Option(help="Text column (default: auto-detect).")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column (default: auto-detect).")]


_signals: list[int] = []


def _terminate(signum, frame) -> None:
    # SIGTERM (kill, timeout, a CI cancel) raised where Ctrl-C would be: the same clean-up runs
    # (runs recorded as failed, half-built bundles removed). typer turns the interrupt into exit
    # status 130, so the signal is remembered here to tell the two apart.
    _signals.append(signum)
    raise KeyboardInterrupt()


class _App(typer.Typer):
    """Turns user errors into one line on stderr and exit status 2, never a traceback."""

    def __call__(self, *args, **kwargs):
        main = threading.current_thread() is threading.main_thread()  # where signals can be set
        previous = signal.signal(signal.SIGTERM, _terminate) if main else None  # serve sets its own
        try:
            return super().__call__(*args, **kwargs)
        except FrugalError as exc:
            ui.err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise SystemExit(2) from None
        except SystemExit as exc:
            if exc.code != 130:  # typer's exit for a KeyboardInterrupt: Ctrl-C, or SIGTERM above
                raise
            ui.err.print("terminated" if _signals else "interrupted")
            raise SystemExit(143 if _signals else 130) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)


app = _App(
    name="frugalml",
    help="Label, tune, compress, serve and monitor text classifiers on a small budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# Stage modules register their commands on import.
from frugalml.cli import compress, core, label, models, serve  # noqa: E402,F401
