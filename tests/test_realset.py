"""The real-set builder on fixtures the test writes itself: clip-art PNGs with SVG metadata, emoji
names and groups (emoji-test.txt, CLDR annotations) and glyphs drawn by the test, plus the `real`
data source reading the built set."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from nas.cli import app

from trainer.data import DataConfig, build_data
from trainer.data.realset import clipart
from trainer.data.realset.build import Roots, Rules, build_realset
from trainer.data.realset.emoji import EMOJI_FONT, GlyphRenderer, read_emoji_test

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


def _drawing(index: int, size: tuple[int, int] = (40, 30), mode: str = "RGBA") -> Image.Image:
    image = Image.new(mode, size, (0, 0, 0, 0) if mode == "RGBA" else (255, 255, 255))
    draw = ImageDraw.Draw(image)
    colour = COLOURS[index % len(COLOURS)]
    draw.rectangle((3 + index % 5, 3, size[0] - 4, size[1] - 4 - index % 4), fill=colour + ((255,) if mode == "RGBA" else ()))
    draw.ellipse((5, 5, 5 + 2 + index % 9, 5 + 2 + index % 7), fill=(255 - colour[0], 0, index * 7 % 255) + ((255,) if mode == "RGBA" else ()))
    return image


def _svg(title: str | None = None, description: str | None = None, keywords: tuple[str, ...] = (), author: str = "Jane Doe") -> str:
    return SVG.format(title=f"<dc:title>{title}</dc:title>" if title else "",
                      description=f"<dc:description>{description}</dc:description>" if description else "",
                      keywords="".join(f"<rdf:li>{k}</rdf:li>" for k in keywords), author=author)


def _clipart(png_root: Path, svg_root: Path, rel: str, image: Image.Image, svg: str) -> None:
    (png_root / rel).parent.mkdir(parents=True, exist_ok=True)
    (svg_root / rel).parent.mkdir(parents=True, exist_ok=True)
    image.save(png_root / f"{rel}.png")
    (svg_root / f"{rel}.svg").write_text(svg)


def _emoji_files(root: Path) -> tuple[Path, Path]:
    lines = []
    for group, codepoints in EMOJI_GROUPS.items():
        lines.append(f"# group: {group}")
        lines.append("# subgroup: test-subgroup")
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


def _glyph(text: str) -> Image.Image:
    index = ord(text[0]) % 97
    return _drawing(index, (34, 32))


@pytest.fixture(scope="module")
def fixture_roots(tmp_path_factory: pytest.TempPathFactory) -> Roots:
    root = tmp_path_factory.mktemp("packages")
    png, svg = root / "png", root / "svg"
    for c, category in enumerate(CATEGORIES):
        for i in range(PER_CATEGORY):
            _clipart(png, svg, f"{category}/item_{c}_{i}_jane_doe_01", _drawing(c * PER_CATEGORY + i),
                     _svg(f"{category} thing {i}", keywords=(category, "hash", f"kw{i % 3}word")))
    # collection boilerplate as the title; the author's name in the file name and the keywords
    _clipart(png, svg, "animals/birds/cigno_architetto_frances_01", _drawing(90),
             _svg("Part of the Flat Icon Collection (Wed Aug 25 23:29:46 2004)", "See http://example.org for more.",
                  ("bird", "Architetto Francesco Rollandin", "mapsym"), author="Architetto Francesco Rollandin"))
    _clipart(png, svg, "food/full_moon_cake_dan_gerhards_01", _drawing(91),
             _svg("Moon Cake", "A round cake. Because it is round, it looks like the moon.", ("cake", "moon"), author="Dan Gerhards"))
    # an exact copy of another image under another name: one of the two goes
    _clipart(png, svg, "transportation/copy_of_item", _drawing(2 * PER_CATEGORY + 3), _svg("a copy"))
    # a decompression bomb (beyond the limit the test sets) and a fully transparent image
    _clipart(png, svg, "food/huge_banana", _drawing(92, (400, 300)), _svg("Banana", keywords=("fruit",)))
    _clipart(png, svg, "food/nothing_drawn", Image.new("RGBA", (20, 20), (0, 0, 0, 0)), _svg("Invisible"))
    emoji_test, cldr = _emoji_files(root)
    return Roots(png, svg, Path("unused.ttf"), emoji_test, (cldr,))


RULES = Rules(image_size=32, heldout_fraction=0.25, max_per_caption=20, shard_size=16, min_heldout_per_class=2)


@pytest.fixture(scope="module")
def built(fixture_roots: Roots, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("realset")
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 50_000  # the 400 x 300 banana is a bomb here
    try:
        build_realset(out, fixture_roots, RULES, workers=1, glyphs=_glyph)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_captions_come_from_the_metadata_without_boilerplate_or_authors(built: Path) -> None:
    rows = {r["id"]: r for r in _rows(built / "train.csv") + _rows(built / "heldout.csv")}
    bird = rows["clipart/animals/birds/cigno_architetto_frances_01"]["caption"]
    assert bird == "cigno: bird"  # boilerplate title -> file name without the author; URL description, author and filing tags gone
    cake = rows["clipart/food/full_moon_cake_dan_gerhards_01"]["caption"]
    assert cake == "Moon Cake: A round cake."  # first sentence only; both keywords are already said
    thing = rows["clipart/animals/item_0_1_jane_doe_01"]["caption"]
    assert thing == "animals thing 1"  # "hash" and digit-bearing keywords dropped, "animals" already said
    assert all("jane" not in r["caption"].lower() and "architetto" not in r["caption"].lower() for r in rows.values())
    smile = rows["emoji/1f600"]
    assert (smile["caption"], smile["category"], smile["source"]) == ("test emoji smileys 0: face, grin", "Smileys & Emotion", "emoji")
    assert not any("skin tone" in r["caption"] for r in rows.values())


def test_split_is_by_image_disjoint_and_stratified(built: Path) -> None:
    train, held = _rows(built / "train.csv"), _rows(built / "heldout.csv")
    train_ids, held_ids = {r["id"] for r in train}, {r["id"] for r in held}
    assert not train_ids & held_ids and len(train_ids) == len(train) and len(held_ids) == len(held)
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["counts"]["train"] == len(train) and manifest["counts"]["heldout"] == len(held)
    for category in ("animals", "food", "transportation"):
        n = sum(r["category"] == category for r in train + held)
        assert sum(r["category"] == category for r in held) == round(0.25 * n)
    assert manifest["counts"]["clipart_dropped_duplicate_image"] == 1
    assert manifest["counts"]["clipart_dropped_blank"] == 1
    tasks = {t["name"]: t for t in manifest["zeroshot"]}
    assert tasks["clipart"]["classes"] == ["animals", "food", "transportation"]  # "unsorted" is not a visual class
    assert tasks["emoji"]["classnames"] == ["animals and nature", "smileys and emotion"]


def test_a_decompression_bomb_is_resized_not_dropped(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["notes"]["decompression_bombs_resized"] == ["food/huge_banana"]
    with Image.open(built / "images/clipart/food/huge_banana.png") as image:
        assert image.size == (32, 32) and image.mode == "RGB"


def test_the_same_inputs_give_byte_identical_files(built: Path, fixture_roots: Roots, tmp_path: Path) -> None:
    again = tmp_path / "again"
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 50_000
    try:
        manifest = build_realset(again, fixture_roots, RULES, workers=1, glyphs=_glyph)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    first = json.loads((built / "manifest.json").read_text())
    assert manifest["files"] == first["files"] and len(manifest["files"]) >= 4
    for name, digest in first["files"].items():
        assert hashlib.sha256((again / name).read_bytes()).hexdigest() == digest
    runner = CliRunner()
    assert runner.invoke(app, ["data", "check", str(again)]).exit_code == 0
    shard = next(iter(n for n in first["files"] if n.endswith(".tar")))
    (again / shard).write_bytes((again / shard).read_bytes()[:-1] + b"x")
    broken = runner.invoke(app, ["data", "check", str(again)])
    assert broken.exit_code == 1 and shard in broken.output


def test_the_real_source_gives_zero_shot_retrieval_and_held_out_loss(built: Path) -> None:
    from trainer.evaluation.chance import chance_levels

    bundle = build_data(DataConfig(source="real", path=str(built), arch_fraction=0.2), 32, 16)
    train = _rows(built / "train.csv")
    assert len(bundle.train) + len(bundle.arch) == len(train)
    assert len(bundle.heldout) == len(_rows(built / "heldout.csv")) and bundle.heldout_name == "real"
    assert [t.name for t in bundle.zeroshot] == ["clipart", "emoji"]
    assert bundle.zeroshot[0].classnames == ("animals", "food", "transportation")
    chance = chance_levels(bundle, heldout_batch_size=8)
    assert chance["zeroshot/clipart/top1"] == pytest.approx(100 / 3) and "heldout/real/loss" in chance
    image, tokens = bundle.train[0]
    assert image.shape == (3, 32, 32) and tokens.shape == (16,)


def test_a_missing_or_foreign_build_is_one_clear_error(tmp_path: Path) -> None:
    from trainer.data import DataError

    with pytest.raises(DataError, match="build the real set first"):
        build_data(DataConfig(source="real", path=str(tmp_path)), 32, 16)
    (tmp_path / "manifest.json").write_text('{"schema": "other/v9"}')
    with pytest.raises(DataError, match="expected 'sharenas/realset/v1'"):
        build_data(DataConfig(source="real", path=str(tmp_path)), 32, 16)


def test_filename_words_drop_the_author_and_numbering() -> None:
    assert clipart.filename_words("cigno_architetto_frances_01", ("Architetto Francesco Rollandin",)) == "cigno"
    assert clipart.filename_words("stop_sign_miguel_s_nchez_", ("Miguel Sánchez",)) == "stop sign"
    assert clipart.filename_words("people_juliane_krug_01a", ("Juliane Krug",)) == "people"
    assert clipart.filename_words("aiga_bar1", ()) == "aiga bar"


@pytest.mark.skipif(not EMOJI_FONT.is_file(), reason="fonts-noto-color-emoji is not installed (scripts/realdata.sh install)")
def test_noto_renders_single_code_points_and_sequences() -> None:
    render = GlyphRenderer()
    for text in ("\U0001F3B7", "\U0001F469\u200D\U0001F4BB", "\U0001F1E9\U0001F1EA"):
        glyph = render(text)
        assert glyph is not None and glyph.getchannel("A").getbbox() is not None
    assert render("\U0001F3B7\U0001F3B7") is None  # two glyphs side by side are not one emoji


@pytest.mark.skipif(not Path("/usr/share/unicode/emoji/emoji-test.txt").is_file(), reason="unicode-data is not installed")
def test_the_packaged_emoji_list_has_groups_and_no_skin_tones() -> None:
    emoji = read_emoji_test()
    assert len(emoji) > 1000 and {e.group for e in emoji} >= {"Flags", "Food & Drink", "Smileys & Emotion"}
    assert not any(0x1F3FB <= cp <= 0x1F3FF for e in emoji for cp in e.codepoints)


def test_removing_the_svg_leaves_a_caption_from_the_file_name(fixture_roots: Roots, tmp_path: Path) -> None:
    png, svg = tmp_path / "png", tmp_path / "svg"
    shutil.copytree(fixture_roots.clipart_png, png)
    (svg).mkdir()
    items = clipart.list_clipart(png, svg)
    rules = clipart.CaptionRules([m for _, m in items])
    captions = {m.path: rules.caption(m) for _, m in items}
    assert captions["food/huge_banana"] == "huge banana"
    assert captions["food/full_moon_cake_dan_gerhards_01"] == "full moon cake dan gerhards"  # the author is known from the SVG only
