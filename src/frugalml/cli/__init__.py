"""The `frugalml` command: parse arguments, call the library, render the result.

One module per stage registers its commands on `app`; keep each one thin.
"""

from __future__ import annotations

import os
from typing import Annotated

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.markup import escape

from frugalml import ui
from frugalml.errors import FrugalError

Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
TextColumn = Annotated[str | None, typer.Option(help="Text column (default: auto-detect).")]
LabelColumn = Annotated[str | None, typer.Option(help="Label column (default: auto-detect).")]


class _App(typer.Typer):
    """Turns user errors into one line on stderr and exit status 2, never a traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except FrugalError as exc:
            ui.err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            ui.err.print("interrupted")
            raise SystemExit(130) from None


app = _App(
    name="frugalml",
    help="Label, tune, compress, serve and monitor text classifiers on a small budget.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def quiet_libraries() -> None:
    """Silence library chatter (weight-loading bars, deprecation notes) on the user's terminal."""
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# Stage modules register their commands on import.
from frugalml.cli import compress, core, label, models, serve  # noqa: E402,F401
