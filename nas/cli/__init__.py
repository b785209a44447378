"""The `sharenas` command line: `app` (typer) and one module of callbacks per command group."""
from nas.cli.app import app

__all__ = ["app"]
