"""What the CLI commands share: the one-line error exit, the user errors of a search, strict JSON."""
from __future__ import annotations

import math
from typing import Any

import typer


def error_exit(problem: Exception | str, code: int = 2) -> typer.Exit:
    """Print `error: PROBLEM` on stderr and return the `typer.Exit` to raise (2: bad input, 1: a run failed)."""
    typer.echo(f"error: {problem}", err=True)
    return typer.Exit(code)


def search_user_errors() -> tuple[type[Exception], ...]:
    """The errors of a search caused by its input (exit code 2): the trainer's, and gate logits that
    diverged (the message names the setting to change)."""
    from nas.supernet.gates import ArchitectureDiverged
    from trainer.run import USER_ERRORS

    return (*USER_ERRORS, ArchitectureDiverged)


def json_safe(value: Any) -> Any:
    """NaN and inf become null, so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
