"""`sharenas dashboard`: a typer callback over `nas.discrete.dashboard`. Bad input prints one line and
exits with code 2."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nas.cli.console import error_exit


def dashboard(
    storage: str = typer.Option(..., "--storage", help="The search's storage URL (see `search optuna --storage`)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port on 127.0.0.1."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", help="Artifact folder (default: the folders the studies recorded)."),
) -> None:
    """Serve optuna-dashboard for a storage on http://127.0.0.1:PORT (Ctrl-C stops it)."""
    from nas.discrete.dashboard import serve_dashboard
    from trainer.run import USER_ERRORS

    try:
        serve_dashboard(storage, port, artifacts, on_ready=lambda url: typer.echo(f"optuna-dashboard on {url} (Ctrl-C stops it)", err=True))
    except USER_ERRORS as exc:
        raise error_exit(exc) from None
