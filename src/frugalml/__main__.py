"""`python -m frugalml ...`: the same as the `frugalml` command (how a job's supervisor runs it)."""

from frugalml.cli import app

app(prog_name="frugalml")
