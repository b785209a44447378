"""`sharenas export`: a typer callback over `nas.export.artifacts`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nas.cli.console import error_exit


def export(
    source: Optional[Path] = typer.Argument(None, help="A training run, a Gumbel search run, or nothing with --storage/--study."),
    out: Path = typer.Option(..., "--out", help="Export directory (arch.json, model.safetensors, README.md)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL of a study to export from."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (with --storage)."),
    trial: Optional[int] = typer.Option(None, "--trial", help="Trial number to export [default: the best completed trial]."),
    onnx: bool = typer.Option(False, "--onnx", help="Also export the image and text encoders to ONNX, checked with onnxruntime."),
) -> None:
    """Export a derived architecture: arch.json + weights + model card; loads with search_spaces.load_exported."""
    from search_spaces import ArchError, PolicyError
    from trainer.run import USER_ERRORS

    from nas.discrete.storage import StorageError
    from nas.export.artifacts import export as run_export

    try:
        record = run_export(source, out, storage, study, trial, onnx)
    except (*USER_ERRORS, ArchError, PolicyError, StorageError) as exc:
        raise error_exit(exc) from None
    except ImportError as exc:
        raise error_exit(f"{exc}; install onnx and onnxruntime for --onnx") from None
    typer.echo(f"exported {record.policy.name} ({record.size}, {record.params.total:,} parameters, weights {record.weights_origin}) -> {out}")
    if record.open_clip is not None:
        typer.echo(f"  open_clip: open_clip.create_model_and_transforms('local-dir:{out}')")
    if record.onnx is not None:
        typer.echo(f"  onnx: {out / record.onnx['image']}, {out / record.onnx['text']} (max |diff| vs PyTorch {record.onnx['max_abs_diff']:.1e})")
