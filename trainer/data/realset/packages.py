"""The Debian packages each source of the real set comes from: which they are, their versions, and the
licenses a build copies into `DIR/LICENSES/`."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCES = ("clipart", "emoji", "tuxpaint", "wesnoth")
DEFAULT_SOURCES = ("clipart", "emoji")
SOURCE_PACKAGES = {
    "clipart": ("openclipart-png", "openclipart-svg"),
    "emoji": ("fonts-noto-color-emoji", "unicode-data", "unicode-cldr-core"),
    "tuxpaint": ("tuxpaint-stamps-default", "librsvg2-bin"),
    "wesnoth": ("wesnoth-1.16-data",),
}
"""The Debian packages whose files (or, for librsvg2-bin, renderer) each source's pairs come from."""
DEBIAN_PACKAGES = tuple(p for source in DEFAULT_SOURCES for p in SOURCE_PACKAGES[source])


def debian_versions(packages: tuple[str, ...] = DEBIAN_PACKAGES) -> dict[str, str]:
    """Debian versions of the source packages (None where dpkg does not know one: fixtures, other systems)."""
    out = {}
    for package in packages:
        try:
            result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=False)
            out[package] = result.stdout.strip() or None
        except FileNotFoundError:
            out[package] = None
    return out


def write_licenses(out: Path, sources: tuple[str, ...] = DEFAULT_SOURCES) -> None:
    target = out / "LICENSES"
    target.mkdir(exist_ok=True)
    copied = []
    for package in source_packages(sources):
        source = Path("/usr/share/doc") / package / "copyright"
        if source.is_file():
            shutil.copyfile(source, target / f"{package}.copyright")
            copied.append(package)
    added = "".join(LICENSE_NOTES[s] for s in sources if s in LICENSE_NOTES)
    note = LICENSE_NOTE + (f"# Licenses of the added sources\n\n{added}\n" if added else "")
    (target / "README.md").write_text(note + "".join(f"- `{p}.copyright`: Debian's copyright file of `{p}`\n" for p in copied))


LICENSE_NOTE = """# Licenses of the real set

- Clip art (`images/clipart/`, captions from the SVG metadata): Open Clip Art Library, dedicated to the
  public domain (Creative Commons Public Domain Dedication), as Debian's `openclipart-png` and
  `openclipart-svg` state.
- Emoji images (`images/emoji/`): rendered from Noto Color Emoji (`fonts-noto-color-emoji`): the font
  is under the SIL Open Font License 1.1, its images under the Apache License 2.0.
- Emoji names, groups (`unicode-data`, emoji-test.txt) and keywords (`unicode-cldr-core`, CLDR
  annotations): Unicode, Inc., Unicode License (Unicode-DFS-2016).

"""
LICENSE_NOTES = {
    "tuxpaint": """- Tux Paint stamps (`images/tuxpaint/`, captions from the stamps' description files): Bill Kendrick
  and the Tux Paint contributors, GNU General Public License version 2 or later, as Debian's
  `tuxpaint-stamps-default` states. SVG-only stamps are rendered with `librsvg2-bin`.
""",
    "wesnoth": """- Wesnoth unit sprites and portraits (`images/wesnoth/`, captions from the units' names and
  descriptions): The Battle for Wesnoth Project and its artists, GNU General Public License version 2
  or later, as Debian's `wesnoth-1.16-data` states.
""",
}
"""What the license README adds for a source beyond the default ones (the default build's README is unchanged)."""


def source_packages(sources: tuple[str, ...]) -> tuple[str, ...]:
    """The packages of `sources`, in the order of `SOURCES`."""
    return tuple(p for source in SOURCES if source in sources for p in SOURCE_PACKAGES[source])
