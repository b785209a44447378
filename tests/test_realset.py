"""The real-set builder on fixtures the test writes itself: clip-art PNGs with SVG metadata, emoji
names and groups (emoji-test.txt, CLDR annotations) and glyphs drawn by the test, plus the `real`
data source reading the built set."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from nas.cli import app
from tests.realset_fixtures import BOMB_LIMIT, RULES, glyph, write_packages
from trainer.data import DataConfig, build_data
from trainer.data.realset import clipart
from trainer.data.realset.build import Roots, build_realset
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
