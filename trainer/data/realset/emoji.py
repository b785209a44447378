"""Emoji of Noto Color Emoji (`fonts-noto-color-emoji`) with their Unicode names, groups and CLDR
keywords, all from Debian's packages:
- which emoji exist, their group and subgroup, and their names: Unicode's `emoji-test.txt`
  (`unicode-data`), fully-qualified entries only, without the `Component` group and without the
  skin-tone variants (five near-copies of each person emoji);
- keywords: CLDR's English annotations (`unicode-cldr-core`, `annotations/en.xml` and
  `annotationsDerived/en.xml`, looked up without variation selectors). Emoji newer than the CLDR
  release have their name only.

Caption: `name: keyword, keyword, ...`, keywords that repeat the name's words left out (at most
`MAX_KEYWORDS`). Glyphs are rendered with Pillow at the font's bitmap size (109 px, colour,
raqm layout for sequences); a sequence the font cannot draw as one glyph is skipped and counted.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
CLDR_ANNOTATIONS = (Path("/usr/share/unicode/cldr/common/annotations/en.xml"), Path("/usr/share/unicode/cldr/common/annotationsDerived/en.xml"))
GLYPH_SIZE = 109
"""The only size at which the font's CBDT bitmaps render."""
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
MAX_KEYWORDS = 4
_LINE = re.compile(r"^(?P<cps>[0-9A-F ]+?)\s*;\s*(?P<status>[a-z-]+)\s*#\s*\S+\s+E\d+\.\d+\s+(?P<name>.+)$")


@dataclass(frozen=True)
class Emoji:
    codepoints: tuple[int, ...]
    name: str
    group: str
    subgroup: str

    @property
    def text(self) -> str:
        return "".join(chr(c) for c in self.codepoints)

    @property
    def key(self) -> str:
        return "-".join(f"{c:x}" for c in self.codepoints)


def read_emoji_test(path: Path = EMOJI_TEST) -> list[Emoji]:
    """The fully-qualified emoji of `emoji-test.txt` in file order, without components and skin tones."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: install Debian's unicode-data (scripts/realdata.sh install)")
    out, group, subgroup = [], "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif (match := _LINE.match(line)) and match["status"] == "fully-qualified" and group != "Component":
            codepoints = tuple(int(c, 16) for c in match["cps"].split())
            if not SKIN_TONES & set(codepoints):
                out.append(Emoji(codepoints, match["name"].strip(), group, subgroup))
    return out


def _bare(text: str) -> str:
    return text.replace("\ufe0f", "")


def read_keywords(paths: tuple[Path, ...] = CLDR_ANNOTATIONS) -> dict[str, tuple[str, ...]]:
    """CLDR's English keywords per emoji (the annotation without the `tts` type), keyed without FE0F."""
    out: dict[str, tuple[str, ...]] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: install Debian's unicode-cldr-core (scripts/realdata.sh install)")
        for element in ET.parse(path).getroot().iter("annotation"):
            if element.get("type") is None and element.text:
                out.setdefault(_bare(element.get("cp", "")), tuple(k.strip() for k in element.text.split("|") if k.strip()))
    return out


def caption(emoji: Emoji, keywords: dict[str, tuple[str, ...]]) -> str:
    said = set(re.findall(r"[a-z]+", emoji.name.lower()))
    extra = []
    for keyword in keywords.get(_bare(emoji.text), ()):
        words = set(re.findall(r"[a-z]+", keyword.lower()))
        if words and not words <= said:
            extra.append(keyword.lower())
            said |= words
        if len(extra) == MAX_KEYWORDS:
            break
    return emoji.name + (": " + ", ".join(extra) if extra else "")


class GlyphRenderer:
    """Draws one emoji per call as an RGBA image, or None when the font has no single glyph for it."""

    def __init__(self, font: Path = EMOJI_FONT) -> None:
        if not font.is_file():
            raise FileNotFoundError(f"{font} not found: install Debian's fonts-noto-color-emoji (scripts/realdata.sh install)")
        self.font = ImageFont.truetype(str(font), GLYPH_SIZE, layout_engine=ImageFont.Layout.RAQM)
        self.single_width = self.font.getbbox("\U0001F600")[2]

    def __call__(self, text: str) -> Image.Image | None:
        left, top, right, bottom = self.font.getbbox(text)
        if right - left > self.single_width * 1.25:
            return None  # drawn as several glyphs: the font does not support the sequence
        image = Image.new("RGBA", (right, bottom), (0, 0, 0, 0))
        ImageDraw.Draw(image).text((0, 0), text, font=self.font, embedded_color=True)
        return image if image.getchannel("A").getbbox() else None
