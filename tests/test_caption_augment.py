"""Caption keyword subsets (`data.caption_augment: keywords`) read the real set's caption grammar back
exactly, draw per (seed, epoch, pair), and reach training through the trainer's epochs; a training
fraction is a nested subset. Fixtures are written by the test (tests/realset_fixtures.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.realset_fixtures import BOMB_LIMIT, RULES, glyph, write_packages
from trainer.data import DataConfig, build_data
from trainer.data.realset import emoji
from trainer.data.realset.build import build_realset
from trainer.data.realset.captions import join_caption, keyword_subset, split_caption
from trainer.data.realset.clipart import CaptionRules, ClipartMeta
from trainer.data.text import tokenize

METAS = [
    ClipartMeta("animals/cat_jane_01", "Sleepy cat", "A cat asleep on a red mat. Drawn in 2010.", ("pet", "Kitten", "mat", "furry"), ("Jane",)),
    ClipartMeta("food/pie_jane_02", "Apple pie", None, ("dessert", "baking"), ("Jane",)),
    ClipartMeta("food/tea_jane_03", "Cup of tea", "A hot cup of tea with steam.", (), ("Jane",)),
    ClipartMeta("transportation/bus_04", None, None, (), ()),
]


def test_split_reads_the_build_captions_back_exactly():
    rules = CaptionRules(METAS)
    captions = [rules.caption(m) for m in METAS]
    assert captions == ["Sleepy cat: A cat asleep on a red mat. pet, kitten, furry", "Apple pie: dessert, baking",
                        "Cup of tea: A hot cup of tea with steam.", "bus"]
    parts = [split_caption(c) for c in captions]
    assert parts == [("Sleepy cat: A cat asleep on a red mat.", ["pet", "kitten", "furry"]), ("Apple pie", ["dessert", "baking"]),
                     ("Cup of tea: A hot cup of tea with steam.", []), ("bus", [])]
    assert [join_caption(*p) for p in parts] == captions
    smile = emoji.Emoji((0x1F600,), "grinning face", "Smileys & Emotion", "face-smiling")
    caption = emoji.caption(smile, {"\U0001F600": ("face", "grin", "happy")})
    assert caption == "grinning face: grin, happy" and split_caption(caption) == ("grinning face", ["grin", "happy"])


def test_keyword_subsets_are_a_function_of_seed_epoch_and_pair():
    caption = "Sleepy cat: A cat asleep on a red mat. pet, kitten, furry, rug, sofa, cushion"
    draws = {(s, e, i): keyword_subset(caption, s, e, i) for s in (0, 1) for e in range(6) for i in (0, 1)}
    assert draws[(0, 3, 1)] == keyword_subset(caption, 0, 3, 1)
    assert len(set(draws.values())) > 6  # 64 subsets; 24 draws hit many of them
    for text in draws.values():
        head, kept = split_caption(text)
        assert head in ("Sleepy cat: A cat asleep on a red mat.", text) and set(kept) <= {"pet", "kitten", "furry", "rug", "sofa", "cushion"}
        assert [k for k in ("pet", "kitten", "furry", "rug", "sofa", "cushion") if k in kept] == kept  # order kept
    assert keyword_subset("Cup of tea: A hot cup of tea.", 0, 0, 0) == "Cup of tea: A hot cup of tea."


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    roots = write_packages(tmp_path_factory.mktemp("packages"))
    out = tmp_path_factory.mktemp("realset")
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, BOMB_LIMIT
    try:
        build_realset(out, roots, RULES, workers=1, glyphs=glyph)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return out


def test_training_captions_change_per_epoch_and_evaluation_ones_never(built: Path):
    plain = build_data(DataConfig(source="real", path=str(built), augment=False), 32, 32)
    varied = build_data(DataConfig(source="real", path=str(built), augment=False, caption_augment="keywords"), 32, 32)
    with_keywords = [i for i in range(len(plain.train)) if split_caption(plain.train.caption(i))[1]]
    assert with_keywords
    seen = set()
    for epoch in range(4):
        varied.train.set_epoch(7, epoch)
        for i in with_keywords:
            tokens = varied.train[i][1]
            expected = keyword_subset(plain.train.caption(i), 7, epoch, varied.train.indices[i])
            assert tokens.equal(tokenize(expected, 32)[0])
            seen.add((i, expected))
    assert len(seen) > len(with_keywords)  # some caption differs between epochs
    assert varied.val_pairs[0].tokens.equal(plain.val_pairs[0].tokens)
    with pytest.raises(ValueError, match="caption_augment"):
        DataConfig(source="shapes", caption_augment="keywords")


def test_a_training_fraction_is_a_nested_subset():
    def train_images(fraction: float) -> list:
        bundle = build_data(DataConfig(source="shapes", num_shapes=200, train_fraction=fraction), 16, 8)
        return [bundle.train[i][0] for i in range(len(bundle.train))]

    full, half, quarter = train_images(1.0), train_images(0.5), train_images(0.25)
    assert (len(half), len(quarter)) == (round(len(full) * 0.5), round(len(full) * 0.25))
    as_bytes = lambda images: {image.numpy().tobytes() for image in images}  # noqa: E731
    assert as_bytes(quarter) <= as_bytes(half) <= as_bytes(full)
    with pytest.raises(ValueError, match="train_fraction"):
        DataConfig(train_fraction=0.0)
