"""`sharenas data build` and `sharenas data check`: the real image-text set from Debian's packages."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nas.cli.console import error_exit


def build(
    out: Path = typer.Argument(..., help="Directory to build the set in (an earlier build there is replaced)."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes decoding and resizing the clip art."),
    clipart_png: Optional[Path] = typer.Option(None, help="The clip-art PNG tree [default: where openclipart-png puts it]."),
    clipart_svg: Optional[Path] = typer.Option(None, help="The clip-art SVG tree [default: where openclipart-svg puts it]."),
    emoji_font: Optional[Path] = typer.Option(None, help="A colour emoji font [default: Noto Color Emoji of fonts-noto-color-emoji]."),
    emoji_test: Optional[Path] = typer.Option(None, help="Unicode's emoji-test.txt [default: unicode-data's]."),
    cldr: Optional[list[Path]] = typer.Option(None, help="CLDR English annotation files (repeatable) [default: unicode-cldr-core's]."),
    tuxpaint: Optional[Path] = typer.Option(None, help="The Tux Paint stamps tree [default: where tuxpaint-stamps-default puts it]."),
    wesnoth: Optional[Path] = typer.Option(None, help="Wesnoth's data/core tree [default: where wesnoth-1.16-data puts it]."),
    sources: str = typer.Option("clipart,emoji", help="Comma-separated sources: clipart, emoji, tuxpaint, wesnoth (the default build is clipart,emoji)."),
) -> None:
    """Build the real set: images, train/held-out CSVs, webdataset shards, licenses and a manifest."""
    from dataclasses import replace

    from trainer.data.realset.build import Roots, build_realset, parse_sources

    given = {"clipart_png": clipart_png, "clipart_svg": clipart_svg, "emoji_font": emoji_font, "emoji_test": emoji_test,
             "cldr": tuple(cldr) if cldr else None, "tuxpaint": tuxpaint,
             "wesnoth": wesnoth}
    roots = replace(Roots(), **{k: v for k, v in given.items() if v is not None})
    try:
        manifest = build_realset(out, roots, workers=workers, sources=parse_sources(sources))
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise error_exit(exc) from None
    counts = manifest["counts"]
    labels = {"clipart": "clip art", "emoji": "emoji", "tuxpaint": "Tux Paint stamps", "wesnoth": "Wesnoth unit pictures"}
    per_source = ", ".join(f"{counts[f'train_{s}'] + counts[f'heldout_{s}']:,} {label}" for s, label in labels.items() if f"train_{s}" in counts)
    typer.echo(f"{out}: {counts['train']:,} training and {counts['heldout']:,} held-out pairs ({per_source}); "
               f"zero-shot tasks: " + ", ".join(f"{z['name']} ({len(z['classes'])} classes)" for z in manifest["zeroshot"]))


def check(root: Path = typer.Argument(..., help="A built set.")) -> None:
    """Re-hash the CSVs and shards of a built set against its manifest."""
    from trainer.data import DataError
    from trainer.data.realset.manifest import changed_files, read_manifest

    try:
        bad, total = changed_files(root), len(read_manifest(root)["files"])
    except DataError as exc:
        raise error_exit(exc) from None
    if bad:
        raise error_exit(f"{len(bad)} files differ from {root}/manifest.json ({', '.join(bad[:5])}); rebuild with scripts/realdata.sh build {root}", 1)
    typer.echo(f"{root}: {total} files match the manifest")
