"""The real-set builder on fixtures the test writes itself: clip-art PNGs with SVG metadata, emoji
names and groups (emoji-test.txt, CLDR annotations) and glyphs drawn by the test, Tux Paint stamps
with description files, Wesnoth unit configurations and pictures, plus the `real` data source reading
the built set."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nas.cli import app
from tests.realset_fixtures import BOMB_LIMIT, RULES, STAMP_CATEGORIES, STAMPS_PER_CATEGORY, TEAM_MAGENTA, glyph, write_packages
from trainer.data import DataConfig, build_data
from trainer.data.realset import clipart, tuxpaint, wesnoth
from trainer.data.realset.build import Roots, build_realset
from trainer.data.realset.packages import DEBIAN_PACKAGES
from trainer.data.realset.emoji import EMOJI_FONT, GlyphRenderer, read_emoji_test


@pytest.fixture(scope="module")
def fixture_roots(tmp_path_factory: pytest.TempPathFactory) -> Roots:
    return write_packages(tmp_path_factory.mktemp("packages"))


def _build(out: Path, roots: Roots) -> dict:
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = BOMB_LIMIT
    try:
        return build_realset(out, roots, RULES, workers=1, glyphs=glyph)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@pytest.fixture(scope="module")
def built(fixture_roots: Roots, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("realset")
    _build(out, fixture_roots)
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
    manifest = _build(again, fixture_roots)
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


@pytest.mark.skipif(bool(subprocess.run(["bash", "-c", "dpkg-query -W fonts-noto-color-emoji unicode-data unicode-cldr-core openclipart-png openclipart-svg libraqm0"],
                                        capture_output=True).returncode),
                    reason="the real-set packages are not installed (scripts/realdata.sh install, as .ci/run does)")
def test_the_script_builds_and_checks_a_set(fixture_roots: Roots, tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "realdata.sh"
    env = {**os.environ, "SHARENAS_PYTHON": sys.executable}
    roots = ["--clipart-png", str(fixture_roots.clipart_png), "--clipart-svg", str(fixture_roots.clipart_svg),
             "--emoji-test", str(fixture_roots.emoji_test), "--cldr", str(fixture_roots.cldr[0]), "--workers", "1"]
    built = subprocess.run(["bash", str(script), "build", str(tmp_path / "set"), *roots], capture_output=True, text=True, env=env)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "training and" in built.stdout and "zero-shot tasks: clipart" in built.stdout
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["counts"]["emoji_found"] == 16 and manifest["packages"]["fonts-noto-color-emoji"]  # the Noto glyphs, Debian versions
    checked = subprocess.run(["bash", str(script), "check", str(tmp_path / "set")], capture_output=True, text=True, env=env)
    assert checked.returncode == 0 and "files match the manifest" in checked.stdout


EXTENDED = ("clipart", "emoji", "tuxpaint", "wesnoth")
ADDED = ("tuxpaint", "wesnoth")
DEFAULT_BUILD_DIGEST = {
    # computed by the builder before the added sources existed, on these fixtures (Pillow 13.0.0, zlib 1.2.13):
    # the manifest's content (rules, counts, notes, zero-shot tasks, CSV and shard hashes) and the license README
    "content": "cc7b5e731c62deb8b6d22a4a21ae6403accb4aba130ee53fafe403e96bc1faca",
    "licenses": "d11ceb1b777a78582b6a52b2ce3228ab81237d1c200b30ad03f62ecdaec99e3c",
}


@pytest.fixture(scope="module")
def extended(fixture_roots: Roots, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("realset-plus")
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = BOMB_LIMIT
    try:
        build_realset(out, fixture_roots, RULES, workers=1, glyphs=glyph, sources=EXTENDED)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return out


@pytest.mark.skipif((Image.__version__, Image.core.zlib_version) != ("13.0.0", "1.2.13"),
                    reason="the recorded digests were computed with Pillow 13.0.0 and zlib 1.2.13, whose PNG bytes they hash")
def test_the_default_build_writes_what_it_wrote_before_the_added_sources(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text(encoding="utf-8"))
    content = {k: manifest[k] for k in ("schema", "image_size", "rules", "counts", "notes", "zeroshot", "files")}
    assert "sources" not in manifest and sorted(manifest["packages"]) == sorted(DEBIAN_PACKAGES)
    assert hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest() == DEFAULT_BUILD_DIGEST["content"]
    assert hashlib.sha256((built / "LICENSES" / "README.md").read_bytes()).hexdigest() == DEFAULT_BUILD_DIGEST["licenses"]


def test_stamp_captions_are_the_first_english_sentence(extended: Path) -> None:
    rows = {r["id"]: r for r in _rows(extended / "train.csv") + _rows(extended / "heldout.csv")}
    peacock = rows["tuxpaint/animals/birds/peacock"]
    assert (peacock["caption"], peacock["category"], peacock["subgroup"], peacock["source"]) == (
        "A peacock (a male peafowl).", "animals", "birds", "tuxpaint")  # byte-order mark and translation gone
    assert rows["tuxpaint/food/toonie"]["caption"] == "A Canadian two dollar coin ($2.00) called a toonie."  # English line, first sentence
    assert rows["tuxpaint/vehicles/stamp_2_3"]["caption"] == "A vehicles stamp number 3."
    assert "tuxpaint/animals/birds/peacock_mirror" not in rows and "tuxpaint/vehicles/no_picture" not in rows
    with Image.open(extended / "images/tuxpaint/vehicles/bus.png") as bus:  # drawn from the PNG, not the black SVG circle
        assert max(bus.getpixel((16, 16))) > 100
    assert tuxpaint.caption(" ".join(["word"] * 30) + ".") == " ".join(["word"] * tuxpaint.MAX_WORDS)


def test_added_sources_keep_the_default_pairs_and_split_stamps_by_category(built: Path, extended: Path) -> None:
    for split in ("train", "heldout"):
        default_rows = _rows(built / f"{split}.csv")
        assert [r for r in _rows(extended / f"{split}.csv") if r["source"] not in ADDED] == default_rows
    train, held = _rows(extended / "train.csv"), _rows(extended / "heldout.csv")
    manifest = json.loads((extended / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sources"] == list(EXTENDED)
    assert manifest["counts"]["tuxpaint_dropped_duplicate_image"] == 1  # the clip-art copy goes, the clip art stays
    assert "tuxpaint/animals/clip_art_copy" not in {r["id"] for r in train + held}
    assert manifest["counts"]["train_tuxpaint"] + manifest["counts"]["heldout_tuxpaint"] == 4 * STAMPS_PER_CATEGORY + 3
    for category in STAMP_CATEGORIES:
        n = sum(r["source"] == "tuxpaint" and r["category"] == category for r in train + held)
        assert sum(r["source"] == "tuxpaint" and r["category"] == category for r in held) == round(0.25 * n)
    assert not {r["id"] for r in train} & {r["id"] for r in held}
    tasks = {t["name"]: t for t in manifest["zeroshot"]}
    assert list(tasks) == ["clipart", "emoji", "tuxpaint"]
    assert tasks["tuxpaint"]["classes"] == ["animals", "food", "vehicles"]  # "seasonal" is an occasion, not a kind of picture
    assert set(manifest["packages"]) >= {"tuxpaint-stamps-default", "librsvg2-bin", "wesnoth-1.16-data", "openclipart-png"}
    licenses = (extended / "LICENSES" / "README.md").read_text()
    assert licenses.count("# Licenses of the added sources") == 1 and "Tux Paint stamps" in licenses and "Wesnoth unit sprites" in licenses
    n = sum(r["source"] == "wesnoth" and r["category"] == "orcs" for r in train + held)
    assert n == 8 and sum(r["source"] == "wesnoth" and r["category"] == "orcs" for r in held) == 2
    bundle = build_data(DataConfig(source="real", path=str(extended)), 32, 16)
    assert [t.name for t in bundle.zeroshot] == ["clipart", "emoji", "tuxpaint"]
    assert len(bundle.heldout) == len(held)


def test_an_unknown_source_or_a_missing_stamps_tree_is_one_clear_error(fixture_roots: Roots, tmp_path: Path) -> None:
    from dataclasses import replace

    result = CliRunner().invoke(app, ["data", "build", str(tmp_path / "set"), "--sources", "clipart,crawl"])
    assert result.exit_code == 2 and "unknown sources ['crawl']: choose from clipart, emoji, tuxpaint, wesnoth" in result.output
    with pytest.raises(FileNotFoundError, match="install Debian's tuxpaint-stamps-default"):
        build_realset(tmp_path / "set", replace(fixture_roots, tuxpaint=tmp_path / "none"), RULES, workers=1, glyphs=glyph, sources=("tuxpaint",))
    with pytest.raises(FileNotFoundError, match="install Debian's wesnoth-1.16-data"):
        build_realset(tmp_path / "set", replace(fixture_roots, wesnoth=tmp_path / "none"), RULES, workers=1, glyphs=glyph, sources=("wesnoth",))


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="librsvg2-bin is not installed (scripts/realdata.sh install --sources tuxpaint)")
def test_an_svg_only_stamp_is_rendered(tmp_path: Path) -> None:
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "disc.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10">'
                                                  '<ellipse cx="10" cy="5" rx="9" ry="4" fill="#c00"/></svg>')
    (tmp_path / "shapes" / "disc.txt").write_text("A red disc.\n")
    (stamp,) = tuxpaint.list_stamps(tmp_path)
    image = tuxpaint.render_svg(stamp.image)
    assert (stamp.description, image.size) == ("A red disc.", (tuxpaint.SVG_SIDE, tuxpaint.SVG_SIDE // 2))
    assert image.getpixel((tuxpaint.SVG_SIDE // 2, tuxpaint.SVG_SIDE // 4))[:3] == (204, 0, 0)


@pytest.mark.skipif(not tuxpaint.STAMPS_ROOT.is_dir(), reason="tuxpaint-stamps-default is not installed (scripts/realdata.sh install --sources tuxpaint)")
def test_the_packaged_stamps_have_english_descriptions() -> None:
    stamps = tuxpaint.list_stamps()
    assert len(stamps) > 900 and {s.category for s in stamps} >= {"animals", "food", "vehicles"}
    assert not any(".utf8=" in s.description or s.path.endswith("_mirror") for s in stamps)


def test_deduplication_lets_the_default_sources_keep_their_pairs() -> None:
    from collections import Counter

    from trainer.data.realset.build import Pair, deduplicate

    clip = [(Pair(f"clipart/shapes/star_{i}", "star", "clipart", "shapes", ""), bytes([i])) for i in range(4)]
    stamps = [(Pair(f"tuxpaint/shapes/star_{i}", "Star", "tuxpaint", "shapes", ""), bytes([10 + i])) for i in range(4)]
    copy = (Pair("tuxpaint/shapes/copy", "a copy", "tuxpaint", "shapes", ""), bytes([0]))
    counts: Counter = Counter()
    kept = deduplicate(stamps + [copy] + clip, max_per_caption=4, counts=counts)
    assert [p.id for p, _ in kept] == [p.id for p, _ in clip]  # the cap and the pixel copy both fall on the stamps
    assert counts == Counter({"tuxpaint_dropped_caption_cap": 4, "tuxpaint_dropped_duplicate_image": 1})


@pytest.mark.skipif(bool(subprocess.run(["bash", "-c", "dpkg-query -W fonts-noto-color-emoji unicode-data unicode-cldr-core openclipart-png openclipart-svg "
                                         "libraqm0 tuxpaint-stamps-default librsvg2-bin wesnoth-1.16-data"], capture_output=True).returncode),
                    reason="the packages of the added sources are not installed (scripts/realdata.sh install --sources clipart,emoji,tuxpaint,wesnoth)")
def test_the_script_builds_the_added_sources(fixture_roots: Roots, tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "realdata.sh"
    env = {**os.environ, "SHARENAS_PYTHON": sys.executable}
    roots = ["--clipart-png", str(fixture_roots.clipart_png), "--clipart-svg", str(fixture_roots.clipart_svg), "--emoji-test", str(fixture_roots.emoji_test),
             "--cldr", str(fixture_roots.cldr[0]), "--tuxpaint", str(fixture_roots.tuxpaint), "--wesnoth", str(fixture_roots.wesnoth), "--workers", "1"]
    built = subprocess.run(["bash", str(script), "build", str(tmp_path / "set"), "--sources", "clipart,emoji,tuxpaint,wesnoth", *roots],
                           capture_output=True, text=True, env=env)
    assert built.returncode == 0, built.stderr[-2000:]
    assert f"{4 * STAMPS_PER_CATEGORY + 3} Tux Paint stamps, 11 Wesnoth unit pictures)" in built.stdout
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["sources"] == list(EXTENDED) and manifest["packages"]["tuxpaint-stamps-default"]  # the Debian version
    assert (tmp_path / "set" / "LICENSES" / "tuxpaint-stamps-default.copyright").is_file()


def test_wesnoth_captions_come_from_the_unit_configuration(extended: Path) -> None:
    rows = {r["id"]: r for r in _rows(extended / "train.csv") + _rows(extended / "heldout.csv")}
    archer = rows["wesnoth/units/elves/archer"]
    assert (archer["caption"], archer["category"], archer["subgroup"]) == (
        'Elvish Archer: Elves are "the" finest archers of the woods.', "elves", "sprite")  # a string over two lines, "" a quote, first sentence
    assert rows["wesnoth/units/elves/archer+female"]["caption"] == archer["caption"]  # the female^ context prefix gone
    assert rows["wesnoth/units/elves/marksman"]["caption"] == "Elvish Marksman"  # no description: the name
    assert not {"wesnoth/units/elves/ghost", "wesnoth/portraits/elves/archer"} & set(rows)  # hidden unit; portrait two units share
    manifest = json.loads((extended / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["notes"]["wesnoth_shared_pictures"] == ["portraits/elves/archer"] and manifest["counts"]["wesnoth_found"] == 11
    with Image.open(extended / "images/wesnoth/units/elves/archer.png") as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    assert ((pixels[:, 0] > 240) & (pixels[:, 1] < 15) & (pixels[:, 2] < 15)).any()  # the team-colour square drawn red
    assert not (np.abs(pixels - TEAM_MAGENTA).sum(axis=1) < 30).any()


def test_the_team_colour_map_follows_the_palette() -> None:
    mapping = wesnoth.team_colour_map()
    assert mapping[(0xF4, 0x9A, 0xC1)] == (255, 0, 0)  # the reference colour becomes the range's mid colour
    assert mapping[(0x3F, 0x00, 0x16)] == (36, 0, 0) and mapping[(0xFD, 0xE9, 0xF1)] == (255, 197, 197)  # darker toward min, lighter toward max
    assert len(mapping) == len(wesnoth.TEAM_PALETTE)


@pytest.mark.skipif(not wesnoth.WESNOTH_ROOT.is_dir(), reason="wesnoth-1.16-data is not installed (scripts/realdata.sh install --sources wesnoth)")
def test_the_packaged_wesnoth_units_have_names_and_pictures() -> None:
    pictures, shared = wesnoth.list_pictures()
    assert len(pictures) > 350 and {p.kind for p in pictures} == {"sprite", "portrait"} and shared
    assert {"Elvish Fighter", "Drake Burner", "Skeleton"} <= {p.name for p in pictures}
    assert not any("^" in p.name or "{" in p.rel for p in pictures)
