"""Data module: embedded sources, CSV, webdataset shards, collate, config validation."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.data import (
    HELDOUT_COMBOS,
    OPENAI_MEAN,
    SHAPE_CLASSES,
    DataConfig,
    DataError,
    build_data,
    collate_pairs,
    denormalize,
    expand_braces,
    to_model_tensor,
    tokenize,
)
from trainer.data.digits import DIGIT_NAMES, ZEROSHOT_TEMPLATES as DIGIT_TEMPLATES, load_digit_images, split_digits
from trainer.data.shapes import ZEROSHOT_TEMPLATES as SHAPE_TEMPLATES

SIZE, CTX = 32, 32


@pytest.fixture(scope="module")
def embedded():
    return build_data(DataConfig(num_shapes=300, digit_repeats=1, max_eval_images=400, seed=3), SIZE, CTX)


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"source": "imagenet"}, "data.source"),
        ({"source": "csv"}, "data.path"),
        ({"val_fraction": 0.0}, "data.val_fraction"),
        ({"arch_fraction": 1.5}, "data.arch_fraction"),
        ({"separator": ";;"}, "data.separator"),
        ({"num_shapes": 3}, "data.num_shapes"),
        ({"digit_repeats": 0}, "data.digit_repeats"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        DataConfig(**kwargs)


# ---------------------------------------------------------------- embedded


def test_embedded_items_have_model_shapes_and_dtypes(embedded):
    image, tokens = embedded.train[0]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert tokens.shape == (CTX,) and tokens.dtype == torch.long
    assert tokens[0].item() == 49406  # start-of-text
    # CLIP normalization: values outside [0, 1], and denormalize maps back into it
    assert image.min() < 0 and denormalize(image).min() >= 0 and denormalize(image).max() <= 1
    last_image, _ = embedded.train[len(embedded.train) - 1]
    assert last_image.shape == (3, SIZE, SIZE)
    task_names = {task.name for task in embedded.zeroshot}
    assert task_names == {"shapes", "digits"}
    # digits captions name only the class, so digits get no retrieval set (it would be zero-shot again)
    assert {pairs.name for pairs in embedded.val_pairs} == {"shapes"}
    for pairs in embedded.val_pairs:
        assert pairs.images.shape[0] == pairs.tokens.shape[0] == len(pairs.captions) >= 50
        assert pairs.tokens.shape[1] == CTX
        assert len(set(pairs.captions)) == len(pairs.captions), "retrieval captions must each have one right image"
    assert embedded.decode_failures.count == 0


def test_embedded_is_deterministic_for_a_seed_and_differs_across_seeds(embedded):
    again = build_data(DataConfig(num_shapes=300, digit_repeats=1, max_eval_images=400, seed=3), SIZE, CTX)
    other = build_data(DataConfig(num_shapes=300, digit_repeats=1, max_eval_images=400, seed=4), SIZE, CTX)
    assert len(again.train) == len(embedded.train)
    for index in (0, 7, 150, len(embedded.train) - 1):
        assert embedded.train.caption(index) == again.train.caption(index)
        assert torch.equal(embedded.train[index][0], again.train[index][0])
        assert torch.equal(embedded.train[index][0], embedded.train[index][0])  # re-reading repeats
    assert [embedded.train.caption(i) for i in range(50)] != [other.train.caption(i) for i in range(50)]
    for mine, theirs in zip(embedded.zeroshot, again.zeroshot):
        assert torch.equal(mine.images, theirs.images) and torch.equal(mine.labels, theirs.labels)


def test_heldout_shape_combos_never_appear_in_training_or_arch_captions(embedded):
    heldout = [f"{colour} {shape}" for colour, shape in HELDOUT_COMBOS]
    for split in (embedded.train, embedded.arch):
        captions = [split.caption(i) for i in range(len(split))]
        assert not [c for c in captions if any(name in c for name in heldout)]
    train_captions = " ".join(embedded.train.caption(i) for i in range(len(embedded.train)))
    for colour, shape in HELDOUT_COMBOS:  # each part still appears with other partners
        assert colour in train_captions and shape in train_captions
    shapes_task = next(task for task in embedded.zeroshot if task.name == "shapes")
    assert shapes_task.classnames == SHAPE_CLASSES and len(SHAPE_CLASSES) == 24
    assert shapes_task.templates == SHAPE_TEMPLATES
    assert {shapes_task.classnames[i] for i in shapes_task.labels.tolist()} == set(heldout)
    shapes_pairs = next(pairs for pairs in embedded.val_pairs if pairs.name == "shapes")
    assert not [c for c in shapes_pairs.captions if any(name in c for name in heldout)]


def test_digit_splits_are_stratified_and_disjoint():
    train, arch, held = split_digits(0.2, 0.1, seed=3)
    assert not set(train) & set(held) and not set(arch) & set(held) and not set(train) & set(arch)
    assert len(train) + len(arch) + len(held) == 1797
    _, labels = load_digit_images()
    counts = np.bincount(labels[held], minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # about 20% of each class (174..183 per class)
    assert split_digits(0.2, 0.1, seed=3) == (train, arch, held)


def test_digit_heldout_images_are_never_trained_on(embedded):
    digits_train = embedded.train.parts[1]
    train_sources = {r.source for r in digits_train.renderings}
    images, labels = load_digit_images()
    digits_task = next(task for task in embedded.zeroshot if task.name == "digits")
    assert digits_task.classnames == DIGIT_NAMES and digits_task.templates == DIGIT_TEMPLATES
    assert digits_task.images.shape == (digits_task.labels.shape[0], 3, SIZE, SIZE)
    assert np.bincount(digits_task.labels.numpy(), minlength=10).min() >= 30
    # The held-out source images share no pixel pattern with any training source image.
    train_patterns = {images[i].tobytes() for i in train_sources}
    held_sources = [i for i in range(len(labels)) if i not in train_sources and i not in {r.source for r in embedded.arch.parts[1].renderings}]
    assert len(held_sources) == digits_task.labels.shape[0]
    assert not [i for i in held_sources if images[i].tobytes() in train_patterns]
    # Training captions name the digit of their image, in the zero-shot prompts' style.
    for index in range(0, len(digits_train), 97):
        rendering = digits_train.renderings[index]
        assert f"digit {DIGIT_NAMES[rendering.label]}" in rendering.caption or f"number {DIGIT_NAMES[rendering.label]}" in rendering.caption
    probe = embedded.linear_probe[0]
    assert probe.name == "digits" and torch.equal(probe.test_labels, digits_task.labels)
    assert probe.train_images.shape[0] == probe.train_labels.shape[0] == 400
    assert set(probe.train_labels.tolist()) == set(range(10))


def test_single_sources_build_only_their_sets():
    digits = build_data(DataConfig(source="digits", digit_repeats=1, arch_fraction=0.0, max_eval_images=400), 16, 16)
    assert digits.arch is None and [t.name for t in digits.zeroshot] == ["digits"]
    assert digits.train[0][0].shape == (3, 16, 16)
    assert len(digits.train) == 1797 - digits.zeroshot[0].labels.shape[0]


# ---------------------------------------------------------------- collate


def test_collate_drops_nones_and_counts_them():
    item = (torch.zeros(3, 4, 4), torch.ones(5, dtype=torch.long))
    images, tokens, skipped = collate_pairs([item, None, item, None, None])
    assert images.shape == (2, 3, 4, 4) and tokens.shape == (2, 5) and skipped == 3
    images, tokens, skipped = collate_pairs([None, None])
    assert images.shape[0] == 0 and tokens.shape[0] == 0 and skipped == 2


def test_transform_resizes_shorter_side_and_center_crops():
    image = Image.new("RGB", (60, 30), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 6, 30))  # blue strips at both ends: cropped away
    image.paste((0, 0, 255), (54, 0, 60, 30))
    tensor = to_model_tensor(image, 16)
    assert tensor.shape == (3, 16, 16)
    red = (1.0 - OPENAI_MEAN[0]) / 0.26862954
    assert torch.allclose(tensor[0], torch.full((16, 16), red), atol=1e-4)


# ---------------------------------------------------------------- webdataset


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_shards(folder: Path, n_shards: int = 3, per_shard: int = 4) -> None:
    for s in range(n_shards):
        with tarfile.open(folder / f"shard-{s:03d}.tar", "w") as tar:
            for k in range(per_shard):
                key = f"sample{s}{k}"
                buffer = io.BytesIO()
                Image.new("RGB", (16, 16), (40 * s, 50 * k, 7)).save(buffer, format="PNG" if k % 2 else "JPEG")
                _add(tar, f"{key}.{'png' if k % 2 else 'jpg'}", buffer.getvalue())
                _add(tar, f"{key}.txt", f"shard {s} sample {k}\n".encode())
            _add(tar, "orphan.txt", b"caption without an image")


def test_brace_expansion():
    assert expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_braces("{x,y}-{8..10}") == ["x-8", "x-9", "x-10", "y-8", "y-9", "y-10"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    assert expand_braces("{solo}.tar") == ["{solo}.tar"]


def test_webdataset_shards_read_back_with_brace_pattern(tmp_path):
    _write_shards(tmp_path)
    cfg = DataConfig(source="webdataset", path=str(tmp_path / "shard-{000..002}.tar"), val_fraction=0.25, arch_fraction=0.0)
    bundle = build_data(cfg, SIZE, CTX)
    assert len(bundle.train) == 9 and len(bundle.val_pairs[0].captions) == 3
    captions = {bundle.train.caption(i) for i in range(9)} | set(bundle.val_pairs[0].captions)
    assert captions == {f"shard {s} sample {k}" for s in range(3) for k in range(4)}
    for i in range(9):
        image, tokens = bundle.train[i]
        s, k = (int(w) for w in bundle.train.caption(i).split()[1::2])
        pixel = denormalize(image)[:, SIZE // 2, SIZE // 2] * 255
        assert torch.allclose(pixel, torch.tensor([40.0 * s, 50.0 * k, 7.0]), atol=4)  # JPEG is lossy
        assert torch.equal(tokens, tokenize(f"shard {s} sample {k}", CTX)[0])
    one = build_data(DataConfig(source="webdataset", path=str(tmp_path / "shard-001.tar"), val_fraction=0.25), SIZE, CTX)
    assert len(one.train) + (len(one.arch) if one.arch else 0) + len(one.val_pairs[0].captions) == 4


def test_webdataset_missing_shard_names_it(tmp_path):
    _write_shards(tmp_path, n_shards=2)
    with pytest.raises(DataError, match=r"shard not found: .*shard-002\.tar"):
        build_data(DataConfig(source="webdataset", path=str(tmp_path / "shard-{000..002}.tar")), SIZE, CTX)


def test_webdataset_corrupt_member_is_skipped(tmp_path):
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:
        for k in range(6):
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (0, 0, 30 * k)).save(buffer, format="PNG")
            _add(tar, f"{k}.png", buffer.getvalue() if k != 2 else b"garbage")
            _add(tar, f"{k}.txt", f"caption {k}".encode())
    bundle = build_data(DataConfig(source="webdataset", path=str(tmp_path / "bad.tar"), val_fraction=0.2, arch_fraction=0.0, seed=5), SIZE, CTX)
    items = [bundle.train[i] for i in range(len(bundle.train))]
    bad_in_train = [bundle.train.caption(i) for i in range(len(bundle.train))].count("caption 2")
    assert sum(item is None for item in items) == bad_in_train
    assert bundle.decode_failures.files <= {f"{tmp_path / 'bad.tar'}:2"} and bundle.decode_failures.count == 1


def test_compressed_shard_is_rejected_with_the_fix(tmp_path):
    with tarfile.open(tmp_path / "c.tar", "w:gz") as tar:
        _add(tar, "a.txt", b"x")
    with pytest.raises(DataError, match="not an uncompressed tar"):
        build_data(DataConfig(source="webdataset", path=str(tmp_path / "c.tar")), SIZE, CTX)


def test_fresh_heldout_shapes_are_disjoint_from_training_and_scored_by_evaluate():
    import torch

    from search_spaces import build_model
    from trainer.data import build_data, fresh_shapes
    from trainer.evaluation import evaluate
    from trainer.evaluation.heldout import held_out_loss, materialize
    from trainer.loss import contrastive_loss

    cfg = DataConfig(source="shapes", num_shapes=200, shapes_zeroshot_per_class=2, max_eval_images=40, heldout_shapes=64)
    bundle = build_data(cfg, 32, 32)
    heldout = fresh_shapes(64, cfg.heldout_seed, 32, 32)
    assert len(bundle.heldout) == 64 and [bundle.heldout.caption(i) for i in range(5)] == [heldout.caption(i) for i in range(5)]
    train_scenes = {bundle.train.base.scenes[i] for i in bundle.train.indices}
    assert not train_scenes & set(heldout.scenes)
    torch.manual_seed(0)
    model = build_model("msclip", "tiny")
    metrics = evaluate(model, bundle, nmi_pairs=0, heldout_batch_size=32)
    batches = materialize(bundle.heldout, 32)
    with torch.no_grad():
        by_hand = sum(float(contrastive_loss(*model(i, t))) * i.shape[0] for i, t in batches) / 64
    assert metrics["heldout/shapes/loss"] == pytest.approx(by_hand, rel=1e-5)
    assert metrics["heldout/shapes/loss"] == pytest.approx(held_out_loss(model, batches, "cpu"), rel=1e-6)
    with pytest.raises(ValueError, match="heldout_shapes"):
        DataConfig(source="digits", heldout_shapes=64)
