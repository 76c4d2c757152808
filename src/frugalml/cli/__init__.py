"""The `frugalml` command: parse arguments, call the library, render the result.

Each stage's commands live in their own module here; keep each one thin.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.markup import escape

from frugalml import ui
from frugalml.cli import (
    alerts,
    compress,
    core,
    deploy,
    doctor,
    jobs,
    label,
    models,
    monitor,
    plan,
    scoring,
    serve,
)
from frugalml.errors import FrugalError

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


# Every command, in the order of the data flow. Each module defines plain functions (or, for a
# group, a Typer of its own); this table alone puts them on the app.
COMMANDS: dict[str, Callable[..., None]] = {
    "tune": core.tune,
    "eval": scoring.eval_command,
    "predict": scoring.predict,
    "compress": compress.compress,
    "serve": serve.serve,
    "run": core.run,
    "plan": plan.plan,
    "profile": plan.profile,
    "doctor": doctor.doctor,
}
GROUPS: dict[str, typer.Typer] = {
    "label": label.app,
    "models": models.app,
    "jobs": jobs.app,
    "deploy": deploy.app,
    "monitor": monitor.app,
    "alerts": alerts.app,
}

app = _App(
    name="frugalml",
    help="Label, tune, compress, serve and monitor text classifiers on a small budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for name, group in GROUPS.items():
    app.add_typer(group, name=name)
for name, command in COMMANDS.items():
    app.command(name)(command)
