"""Captions for the Tux Paint stamps that Debian ships (`tuxpaint-stamps-default`): pictures of
animals, food, vehicles, clothes, ... that children stamp into drawings, each with a description
written for them.

A stamp is an image file (`NAME.png` or `NAME.svg`) beside its description file `NAME.txt`; the
tree's top folder is its category (`animals`, `food`, ...) and the next its subgroup (`birds`, ...).
Fixed rules:
- **Which stamps**: those with a description file and an image. A stamp shipped as both PNG and SVG
  uses the PNG (the same drawing, already rasterized); an SVG-only stamp is rendered with
  `rsvg-convert` (Debian's `librsvg2-bin`) to fit `SVG_SIDE` px. Images without a description (the
  `_mirror` copies that Tux Paint flips) are left out.
- **Caption**: the description's English line (the file's first line without a `LANG.utf8=`
  prefix; the other lines are translations), whitespace collapsed, cut at its first sentence and
  at `MAX_WORDS` words: "A peacock (a male peafowl)."; "A Canadian two dollar coin ($2.00) called a
  toonie." (the explanation that follows is dropped). No author names appear in the descriptions.

Everything is a pure function of the package tree (and the `librsvg2-bin` version for SVG-only
stamps), so the same package versions give the same captions and images.
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

STAMPS_ROOT = Path("/usr/share/tuxpaint/stamps")
SVG_SIDE = 512
"""SVG-only stamps are rendered to fit this square before the set's own resizing."""
MAX_WORDS = 25
NON_VISUAL = frozenset({"seasonal"})
"""Categories that are an occasion (Christmas, Hanukkah, ...) rather than a kind of picture: kept
as pairs, left out of the zero-shot task."""
_TRANSLATION = re.compile(r"^[A-Za-z_@]+\.utf8=")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class Stamp:
    path: str  # relative to the stamps root, without extension: "animals/birds/peacock"
    image: Path
    description: str

    @property
    def category(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def subgroup(self) -> str:
        parts = self.path.split("/")
        return parts[1] if len(parts) > 2 else ""


def english_line(text: str) -> str | None:
    """The description's English line: the first non-empty line that is not a translation."""
    for line in text.lstrip("\ufeff").splitlines():
        if line.strip() and not _TRANSLATION.match(line):
            return line
    return None


def caption(description: str) -> str:
    """The first sentence of the English description, at most `MAX_WORDS` words."""
    sentence = _SENTENCE_END.split(" ".join(description.split()), maxsplit=1)[0]
    words = sentence.split()
    return " ".join(words[:MAX_WORDS]) if len(words) > MAX_WORDS else sentence


def list_stamps(root: Path = STAMPS_ROOT) -> list[Stamp]:
    """Every stamp with a description and an image, sorted by path (PNG preferred over SVG)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} not found: install Debian's tuxpaint-stamps-default (scripts/realdata.sh install --sources tuxpaint)")
    out = []
    for txt in sorted(root.rglob("*.txt")):
        image = next((p for p in (txt.with_suffix(".png"), txt.with_suffix(".svg")) if p.is_file()), None)
        line = english_line(txt.read_text(encoding="utf-8", errors="replace"))
        if image is not None and line:
            out.append(Stamp(txt.relative_to(root).with_suffix("").as_posix(), image, caption(line)))
    return out


def check_svg_renderer() -> None:
    """Raises FileNotFoundError (with the fix) when `rsvg-convert` is missing."""
    if shutil.which("rsvg-convert") is None:
        raise FileNotFoundError("rsvg-convert not found: install Debian's librsvg2-bin (scripts/realdata.sh install --sources tuxpaint)")


def load_stamp(stamp: Stamp) -> Image.Image:
    """The stamp's picture as RGBA: the PNG as shipped, or the SVG rendered by `render_svg`."""
    if stamp.image.suffix == ".svg":
        return render_svg(stamp.image)
    with Image.open(stamp.image) as image:
        return image.convert("RGBA")


def render_svg(path: Path, side: int = SVG_SIDE) -> Image.Image:
    """An SVG rendered by `rsvg-convert` to fit `side` x `side` px, as RGBA."""
    result = subprocess.run(["rsvg-convert", "--width", str(side), "--height", str(side), "--keep-aspect-ratio", str(path)],
                            capture_output=True, check=False)
    if result.returncode != 0:
        raise ValueError(f"rsvg-convert failed: {result.stderr.decode(errors='replace').strip()[:200]}")
    with Image.open(io.BytesIO(result.stdout)) as image:
        return image.convert("RGBA")
