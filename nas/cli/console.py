"""The one-line error exit shared by the CLI commands."""
from __future__ import annotations

import typer


def error_exit(problem: Exception | str, code: int = 2) -> typer.Exit:
    """Print `error: PROBLEM` on stderr and return the `typer.Exit` to raise (2: bad input, 1: a run failed)."""
    typer.echo(f"error: {problem}", err=True)
    return typer.Exit(code)
