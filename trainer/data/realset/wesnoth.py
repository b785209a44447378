"""Captions for the unit pictures of The Battle for Wesnoth that Debian ships (`wesnoth-1.16-data`):
every unit type's map sprite (72 px) and portrait, captioned from the unit's own configuration.

A unit type is a `[unit_type]` block of `units/RACE/*.cfg` (WML). Fixed rules:
- **Which units**: those with a name and a plain image path (no macro `{...}`, path function `~...`
  or frame list `[...]`), not marked `hide_help=yes` or `do_not_list=yes`, outside the `fake`
  folder; a `[female]` or `[male]` section with its own name and image is a unit of its own
  (its name without the `female^` / `male^` context prefix). `[variation]` sections are left out
  (their images are written with macros).
- **Pictures**: the unit's `image` (its standing sprite) and its `profile` (the portrait, when one
  is given, without `~` path functions). A picture that several differently named units use is
  left out: its caption would be a guess. Magenta team-colour pixels are recoloured to red as the
  game draws the first side (`TEAM_PALETTE` to the `red` range, Wesnoth's `recolor_range` rule).
- **Caption**: `name: first sentence of the description`, at most `MAX_WORDS` words in all;
  just the name when the unit has no description. Descriptions are the game's English text;
  they name no authors.
- Category: the race folder (`elves`, `drakes`, `undead`, ...); subgroup `sprite` or `portrait`.

Everything is a pure function of the package tree, so the same package version gives the same
pairs.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

WESNOTH_ROOT = Path("/usr/share/games/wesnoth/1.16/data/core")
MAX_WORDS = 25
SKIPPED_FOLDERS = frozenset({"fake"})
"""Unit folders of helper units that are not pictures of anything (the fog clearer)."""
TEAM_PALETTE = tuple(int(c, 16) for c in (
    "F49AC1,3F0016,55002A,690039,7B0045,8C0051,9E005D,B10069,C30074,D6007F,EC008C,EE3D96,EF5BA1,F172AC,F287B6,F6ADCD,F8C1D9,FAD5E5,FDE9F1"
).split(","))
"""The `magenta` colour palette of `team-colors.cfg`: the pixels units are recoloured in."""
RED_RANGE = (0xFF0000, 0xFFFFFF, 0x000000)
"""The `red` colour range of `team-colors.cfg` (mid, max, min): the first side's colour."""
_TAG = re.compile(r"^\s*\[(/?)\+?(\w+)\]")
_KEY = re.compile(r"^\s*(\w+)\s*=\s*(.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class UnitPicture:
    image: Path
    rel: str  # the picture's path under images/, without extension: "units/elves-wood/fighter"
    name: str
    description: str | None
    race: str  # the folder under units/
    kind: str  # "sprite" | "portrait"


def _rgb(value: int) -> tuple[int, int, int]:
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def team_colour_map(palette: tuple[int, ...] = TEAM_PALETTE, colour_range: tuple[int, int, int] = RED_RANGE) -> dict[tuple[int, int, int], tuple[int, int, int]]:
    """Each palette colour -> its team colour: the palette's first colour maps to the range's mid
    colour; darker ones blend toward its min, lighter ones toward its max, by their mean channel."""
    mid, top, low = (_rgb(c) for c in colour_range)
    reference = sum(_rgb(palette[0])) // 3
    out = {}
    for colour in palette:
        rgb = _rgb(colour)
        mean = sum(rgb) // 3
        if mean <= reference:
            ratio, other = mean / reference, low
        else:
            ratio, other = (255 - mean) / (255 - reference), top
        out[rgb] = tuple(min(int(ratio * m + (1 - ratio) * o), 255) for m, o in zip(mid, other))
    return out


def recolour(image: Image.Image, mapping: dict[tuple[int, int, int], tuple[int, int, int]]) -> Image.Image:
    """The image (as RGBA) with every pixel of a mapped colour replaced, its alpha kept."""
    pixels = np.array(image.convert("RGBA"))
    rgb = pixels[..., :3].copy()
    for old, new in mapping.items():
        rgb[(pixels[..., :3] == old).all(axis=-1)] = new
    pixels[..., :3] = rgb
    return Image.fromarray(pixels, "RGBA")


def load_picture(path: Path) -> Image.Image:
    """A unit picture as the game draws it for the first side (team colour red)."""
    with Image.open(path) as image:
        return recolour(image, TEAM_COLOURS)


TEAM_COLOURS = team_colour_map()


def _value(lines: list[str], start: int, raw: str) -> tuple[str, int]:
    """A WML value beginning with `raw` on line `start`: a translatable or plain string (which may
    span lines; `""` is a quote) or a bare word. Returns the text and the last line it used."""
    raw = raw.strip()
    if raw.startswith("_"):
        raw = raw[1:].lstrip()
    if not raw.startswith('"'):
        return raw.split("#", 1)[0].strip(), start
    text, index = raw[1:], start
    while True:
        match = re.search(r'(?<!")"(?!")', text.replace('""', "\0\0"))
        if match:
            return text[:match.start()].replace('""', '"'), index
        index += 1
        if index >= len(lines):
            return text.replace('""', '"'), index - 1
        text += "\n" + lines[index]


def read_unit_types(path: Path) -> list[dict[str, str]]:
    """The attributes of each `[unit_type]` of a WML file, and of its `[female]` / `[male]`
    sections (as `female.KEY`); attributes of other nested sections are skipped."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    units: list[dict[str, str]] = []
    stack: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if tag := _TAG.match(line):
            if tag[1]:
                if stack and stack[-1] == tag[2]:
                    stack.pop()
            else:
                stack.append(tag[2])
                if stack == ["unit_type"]:
                    units.append({})
        elif (key := _KEY.match(line)) and stack and stack[0] == "unit_type":
            value, index = _value(lines, index, key[2])
            if len(stack) == 1:
                units[-1].setdefault(key[1], value)
            elif len(stack) == 2 and stack[1] in ("female", "male"):
                units[-1].setdefault(f"{stack[1]}.{key[1]}", value)
        index += 1
    return units


def _plain_path(value: str | None) -> str | None:
    """An image path without `~` path functions, or None when it is built by a macro or frame list."""
    if not value or "{" in value or "[" in value:
        return None
    path = value.split("~", 1)[0].strip()
    return path if path.endswith(".png") else None


def caption(name: str, description: str | None) -> str:
    """`name: first sentence of the description`, at most `MAX_WORDS` words."""
    text = name
    if description:
        sentence = _SENTENCE_END.split(" ".join(description.split()), maxsplit=1)[0]
        text = f"{name}: {sentence}"
    words = text.split()
    return " ".join(words[:MAX_WORDS]) if len(words) > MAX_WORDS else text


def _without_context(name: str) -> str:
    return re.sub(r"^(female|male)\^", "", name).strip()


def list_pictures(root: Path = WESNOTH_ROOT) -> tuple[list[UnitPicture], list[str]]:
    """Every unit picture with its caption fields (sorted by picture path), and the pictures left
    out because differently named units use them."""
    units_dir, images_dir = root / "units", root / "images"
    if not units_dir.is_dir():
        raise FileNotFoundError(f"{units_dir} not found: install Debian's wesnoth-1.16-data (scripts/realdata.sh install --sources wesnoth)")
    found: dict[str, list[UnitPicture]] = defaultdict(list)
    for cfg in sorted(units_dir.rglob("*.cfg")):
        race = cfg.relative_to(units_dir).parts[0]
        if race in SKIPPED_FOLDERS:
            continue
        for unit in read_unit_types(cfg):
            if unit.get("hide_help") == "yes" or unit.get("do_not_list") == "yes":
                continue
            description = unit.get("description") or None
            for prefix in ("", "female.", "male."):
                if prefix and f"{prefix}image" not in unit:
                    continue
                name = _without_context(unit.get(f"{prefix}name") or unit.get("name", ""))
                if not name:
                    continue
                for kind, key in (("sprite", "image"), ("portrait", "profile")):
                    rel = _plain_path(unit.get(f"{prefix}{key}"))
                    if rel and (images_dir / rel).is_file():
                        picture = UnitPicture(images_dir / rel, rel[: -len(".png")], name, description, race, kind)
                        found[picture.rel].append(picture)
    pictures, ambiguous = [], []
    for rel in sorted(found):
        if len({p.name for p in found[rel]}) > 1:
            ambiguous.append(rel)
        else:
            pictures.append(found[rel][0])
    return pictures, ambiguous
