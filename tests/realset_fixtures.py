"""Package trees the real-set tests write themselves: clip-art PNGs with SVG metadata (boilerplate
titles, author names in file names, a decompression bomb, a blank image, a duplicate), an
emoji-test.txt with two groups and skin-tone variants, a CLDR annotation file, Tux Paint stamps
with description files (translations, a byte-order mark, a long description, a mirror image without
one, a stamp in both PNG and SVG, a copy of a clip-art image), and Wesnoth unit configurations with
sprites and portraits (a female variant, a macro-built image, a hidden unit, a portrait two units
share, team-colour pixels)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from trainer.data.realset.build import Roots, Rules

SVG = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="http://web.resource.org/cc/" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" width="10" height="10">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    {title}{description}
    <dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>
    <dc:creator><cc:Agent><dc:title>{author}</dc:title></cc:Agent></dc:creator>
  </cc:Work></rdf:RDF></metadata>
  <rect width="10" height="10"/>
</svg>
"""
COLOURS = [(200, 30, 30), (30, 160, 40), (40, 60, 200), (220, 180, 20), (150, 40, 160), (20, 170, 170)]
CATEGORIES = ("animals", "food", "transportation", "unsorted")
PER_CATEGORY = 14
EMOJI_GROUPS = {"Smileys & Emotion": ["1F600", "1F601", "1F602", "1F603", "1F604", "1F605", "1F606", "1F607"],
                "Animals & Nature": ["1F400", "1F401", "1F402", "1F403", "1F404", "1F405", "1F406", "1F407"]}
STAMP_CATEGORIES = ("animals", "food", "vehicles", "seasonal")
STAMPS_PER_CATEGORY = 8
RULES = Rules(image_size=32, heldout_fraction=0.25, max_per_caption=20, shard_size=16, min_heldout_per_class=2)
BOMB_LIMIT = 50_000
"""Pillow's pixel limit the tests set: the 400 x 300 banana is a decompression bomb under it."""


def drawing(index: int, size: tuple[int, int] = (40, 30)) -> Image.Image:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    colour = COLOURS[index % len(COLOURS)]
    draw.rectangle((3 + index % 5, 3, size[0] - 4, size[1] - 4 - index % 4), fill=colour + (255,))
    draw.ellipse((5, 5, 5 + 2 + index % 9, 5 + 2 + index % 7), fill=(255 - colour[0], 0, index * 7 % 255, 255))
    return image


def glyph(text: str) -> Image.Image:
    """A stand-in for a font's emoji glyph: a drawing that depends on the code point."""
    return drawing(ord(text[0]) % 97, (34, 32))


def _svg(title: str | None = None, description: str | None = None, keywords: tuple[str, ...] = (), author: str = "Jane Doe") -> str:
    return SVG.format(title=f"<dc:title>{title}</dc:title>" if title else "",
                      description=f"<dc:description>{description}</dc:description>" if description else "",
                      keywords="".join(f"<rdf:li>{k}</rdf:li>" for k in keywords), author=author)


def _clipart(png_root: Path, svg_root: Path, rel: str, image: Image.Image, svg: str) -> None:
    for root in (png_root, svg_root):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    image.save(png_root / f"{rel}.png")
    (svg_root / f"{rel}.svg").write_text(svg)


def _emoji_files(root: Path) -> tuple[Path, Path]:
    lines = []
    for group, codepoints in EMOJI_GROUPS.items():
        lines += [f"# group: {group}", "# subgroup: test-subgroup"]
        for i, cp in enumerate(codepoints):
            lines.append(f"{cp} ; fully-qualified # {chr(int(cp, 16))} E1.0 test emoji {group.split()[0].lower()} {i}")
            lines.append(f"{cp} 1F3FB ; fully-qualified # x E1.0 test emoji {i}: light skin tone")
    lines += ["# group: Component", "1F3FB ; component # x E1.0 light skin tone"]
    test = root / "emoji-test.txt"
    test.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cldr = root / "en.xml"
    cldr.write_text('<ldml><annotations><annotation cp="\U0001F600">face | grin | test emoji smileys 0</annotation>'
                    '<annotation cp="\U0001F600" type="tts">test emoji smileys 0</annotation></annotations></ldml>', encoding="utf-8")
    return test, cldr


def write_packages(root: Path, emoji_font: Path = Path("unused.ttf")) -> Roots:
    """The fixture package trees under `root`."""
    png, svg = root / "png", root / "svg"
    for c, category in enumerate(CATEGORIES):
        for i in range(PER_CATEGORY):
            _clipart(png, svg, f"{category}/item_{c}_{i}_jane_doe_01", drawing(c * PER_CATEGORY + i),
                     _svg(f"{category} thing {i}", keywords=(category, "hash", f"kw{i % 3}word")))
    # collection boilerplate as the title; the author's name in the file name and the keywords
    _clipart(png, svg, "animals/birds/cigno_architetto_frances_01", drawing(90),
             _svg("Part of the Flat Icon Collection (Wed Aug 25 23:29:46 2004)", "See http://example.org for more.",
                  ("bird", "Architetto Francesco Rollandin", "mapsym"), author="Architetto Francesco Rollandin"))
    _clipart(png, svg, "food/full_moon_cake_dan_gerhards_01", drawing(91),
             _svg("Moon Cake", "A round cake. Because it is round, it looks like the moon.", ("cake", "moon"), author="Dan Gerhards"))
    # an exact copy of another image under another name: one of the two goes
    _clipart(png, svg, "transportation/copy_of_item", drawing(2 * PER_CATEGORY + 3), _svg("a copy"))
    # a decompression bomb (beyond BOMB_LIMIT) and a fully transparent image
    _clipart(png, svg, "food/huge_banana", drawing(92, (400, 300)), _svg("Banana", keywords=("fruit",)))
    _clipart(png, svg, "food/nothing_drawn", Image.new("RGBA", (20, 20), (0, 0, 0, 0)), _svg("Invisible"))
    emoji_test, cldr = _emoji_files(root)
    return Roots(png, svg, emoji_font, emoji_test, (cldr,), _stamps(root / "stamps"), _wesnoth(root / "wesnoth"))


def _stamp(root: Path, rel: str, image: Image.Image | None, description: str | None, svg: bool = False) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    if image is not None:
        image.save(root / f"{rel}.png")
    if svg:
        (root / f"{rel}.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><circle cx="5" cy="5" r="4"/></svg>')
    if description is not None:
        (root / f"{rel}.txt").write_text(description, encoding="utf-8")


def _stamps(root: Path) -> Path:
    """A Tux Paint stamps tree: `STAMPS_PER_CATEGORY` plain stamps per category, and the special cases."""
    for c, category in enumerate(STAMP_CATEGORIES):
        for i in range(STAMPS_PER_CATEGORY):
            _stamp(root, f"{category}/stamp_{c}_{i}", drawing(100 + c * STAMPS_PER_CATEGORY + i, (36, 28)),
                   f"A {category} stamp number {i}.\nde.utf8=Ein Stempel {i}.\nfr.utf8=Un tampon {i}.\n")
    _stamp(root, "animals/birds/peacock", drawing(140, (30, 36)), "\ufeffA peacock (a male peafowl).\nde.utf8=Ein Pfau.\n")
    _stamp(root, "animals/birds/peacock_mirror", drawing(141, (30, 36)), None)  # flipped copy: no description, not a stamp
    _stamp(root, "food/toonie", drawing(142, (30, 30)),
           "es.utf8=Una moneda.\nA Canadian two dollar coin ($2.00) called a toonie. (Its name is a play on the loonie.)\n")
    _stamp(root, "vehicles/bus", drawing(143, (40, 24)), "A bus.\n", svg=True)  # PNG and SVG: the PNG is used
    _stamp(root, "vehicles/no_picture", None, "A description without a picture.\n")
    _stamp(root, "animals/clip_art_copy", drawing(0), "A copy of a clip-art picture.\n")  # the pixels of animals/item_0_0
    return root


TEAM_MAGENTA = (244, 154, 193)
"""The first colour of Wesnoth's team-colour palette: the game draws it in the side's colour."""
UNITS_CFG = """#textdomain wesnoth-units
[unit_type]
    id=Elvish Archer
    name= _ "Elvish Archer"
    race=elf
    image="units/elves/archer.png"
    profile="portraits/elves/archer.png~RIGHT()"
    description= _ "Elves are ""the"" finest archers
of the woods. Their arrows rarely miss."
    [attack]
        name=bow
        description=_"bow"
        icon=attacks/bow-elven.png
    [/attack]
    [female]
        name= _ "female^Elvish Archer"
        image="units/elves/archer+female.png"
    [/female]
[/unit_type]
[unit_type]
    id=Elvish Marksman
    name= _ "Elvish Marksman"
    image="units/elves/marksman.png"
    profile="portraits/elves/archer.png"
[/unit_type]
[unit_type]
    id=Elvish Walker
    name= _ "Elvish Walker"
    image="units/elves/{BASE}.png"
[/unit_type]
[unit_type]
    id=Elvish Ghost
    name= _ "Elvish Ghost"
    image="units/elves/ghost.png"
    hide_help=yes
[/unit_type]
"""


def _wesnoth(root: Path) -> Path:
    """A Wesnoth data/core tree: elves with a female variant and a shared portrait, and plain units
    enough for a split."""
    (root / "units" / "elves").mkdir(parents=True)
    (root / "units" / "elves" / "Elves.cfg").write_text(UNITS_CFG, encoding="utf-8")
    for rel, index in (("units/elves/archer", 150), ("units/elves/archer+female", 151), ("units/elves/marksman", 152),
                       ("units/elves/ghost", 153), ("portraits/elves/archer", 154)):
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        image = drawing(index, (36, 36))
        if rel == "units/elves/archer":
            ImageDraw.Draw(image).rectangle((8, 8, 20, 20), fill=TEAM_MAGENTA + (255,))
        image.save(root / "images" / f"{rel}.png")
    (root / "units" / "orcs").mkdir()
    cfg = []
    for i in range(8):
        cfg.append(f'[unit_type]\n    name= _ "Orcish Unit {i}"\n    image="units/orcs/unit{i}.png"\n    description= _ "An orc."\n[/unit_type]')
        (root / "images" / "units" / "orcs").mkdir(parents=True, exist_ok=True)
        drawing(160 + i, (36, 36)).save(root / "images" / "units" / "orcs" / f"unit{i}.png")
    (root / "units" / "orcs" / "Orcs.cfg").write_text("\n".join(cfg) + "\n", encoding="utf-8")
    return root
