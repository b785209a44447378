"""User data listed in a CSV file (trainer.data.csv_source): splits, columns and separators, images that
fail to decode or are missing, one-line errors, and the decoded-image cache."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.data import DataConfig, DataError, build_data, collate_pairs, to_model_tensor, tokenize

SIZE, CTX = 32, 32


def _png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _write_csv(path: Path, rows: list[tuple[str, str]], header=("filepath", "caption"), sep: str = ",") -> None:
    lines = [sep.join(header)] + [sep.join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _csv_dataset(tmp_path: Path, n: int = 10) -> Path:
    rows = []
    for i in range(n):
        _png(tmp_path / "img" / f"{i}.png", (25 * i, 0, 255 - 25 * i))
        rows.append((f"img/{i}.png", f"picture number {i}"))
    _write_csv(tmp_path / "pairs.csv", rows)
    return tmp_path / "pairs.csv"


def test_csv_happy_path_with_splits(tmp_path):
    csv_path = _csv_dataset(tmp_path)
    bundle = build_data(DataConfig(source="csv", path=str(csv_path), val_fraction=0.2, arch_fraction=0.1, augment=False), SIZE, CTX)
    assert (len(bundle.train), len(bundle.arch), len(bundle.val_pairs[0].captions)) == (7, 1, 2)
    captions = [bundle.train.caption(i) for i in range(7)] + [bundle.arch.caption(0)] + list(bundle.val_pairs[0].captions)
    assert sorted(captions) == sorted(f"picture number {i}" for i in range(10))
    image, tokens = bundle.train[0]
    number = int(bundle.train.caption(0).split()[-1])
    expected = to_model_tensor(Image.open(tmp_path / "img" / f"{number}.png"), SIZE)
    assert torch.equal(image, expected)
    assert torch.equal(tokens, tokenize(f"picture number {number}", CTX)[0])
    assert bundle.zeroshot == [] and bundle.decode_failures.count == 0


def test_csv_custom_columns_separator_and_image_root(tmp_path):
    for i in range(4):
        _png(tmp_path / "elsewhere" / f"{i}.png", (0, 60 * i, 0))
    _write_csv(tmp_path / "meta.tsv", [(f"caption {i}", f"{i}.png") for i in range(4)], header=("text", "image"), sep="\t")
    cfg = DataConfig(
        source="csv", path=str(tmp_path / "meta.tsv"), image_root=str(tmp_path / "elsewhere"),
        image_column="image", caption_column="text", separator="\t", val_fraction=0.25, arch_fraction=0.0,
    )
    bundle = build_data(cfg, SIZE, CTX)
    assert len(bundle.train) == 3 and bundle.arch is None
    assert all(bundle.train[i] is not None for i in range(3))


def test_csv_corrupt_and_missing_images_are_skipped_and_counted(tmp_path, caplog):
    csv_path = _csv_dataset(tmp_path)
    (tmp_path / "img" / "3.png").write_bytes(b"this is not a png")
    (tmp_path / "img" / "5.png").unlink()
    cfg = DataConfig(source="csv", path=str(csv_path), val_fraction=0.1, arch_fraction=0.0, seed=1)
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        bundle = build_data(cfg, SIZE, CTX)
        failures_at_start = bundle.decode_failures.count  # the val image may be one of them
        items = [bundle.train[i] for i in range(len(bundle.train))] + [bundle.train[i] for i in range(len(bundle.train))]
    bad_in_train = sum(bundle.train.caption(i) in ("picture number 3", "picture number 5") for i in range(len(bundle.train)))
    assert sum(item is None for item in items) == 2 * bad_in_train
    assert bundle.decode_failures.count == failures_at_start + 2 * bad_in_train
    assert bundle.decode_failures.files == {str(tmp_path / "img" / "3.png"), str(tmp_path / "img" / "5.png")}
    warned = [r.getMessage() for r in caplog.records if "failed to decode" in r.getMessage()]
    assert len(warned) == 2 and any("3.png" in w for w in warned)  # once per file, not per read
    images, tokens, skipped = collate_pairs(items)
    assert skipped == 2 * bad_in_train and images.shape[0] == len(items) - skipped


def test_csv_missing_column_names_it_and_lists_present_ones(tmp_path):
    csv_path = _csv_dataset(tmp_path)
    with pytest.raises(DataError, match=r"no column 'path'.*'filepath', 'caption'"):
        build_data(DataConfig(source="csv", path=str(csv_path), image_column="path"), SIZE, CTX)
    with pytest.raises(DataError, match=r"no column 'text' \(data.caption_column\)"):
        build_data(DataConfig(source="csv", path=str(csv_path), caption_column="text"), SIZE, CTX)


def test_csv_missing_file_or_image_directory_names_it(tmp_path):
    csv_path = _csv_dataset(tmp_path)
    missing_dir = tmp_path / "no_such_images"
    with pytest.raises(DataError, match=f"image directory not found: {missing_dir}"):
        build_data(DataConfig(source="csv", path=str(csv_path), image_root=str(missing_dir)), SIZE, CTX)
    with pytest.raises(DataError, match="CSV file not found: .*nope.csv"):
        build_data(DataConfig(source="csv", path=str(tmp_path / "nope.csv")), SIZE, CTX)


def test_every_image_failing_does_not_crash_collate(tmp_path):
    rows = []
    for i in range(6):
        (tmp_path / f"{i}.png").write_bytes(b"\x89PNG broken")
        rows.append((f"{i}.png", f"caption {i}"))
    _write_csv(tmp_path / "pairs.csv", rows)
    with pytest.raises(DataError, match="none of its 1 images could be decoded"):
        build_data(DataConfig(source="csv", path=str(tmp_path / "pairs.csv"), val_fraction=0.1, arch_fraction=0.0), SIZE, CTX)
    from trainer.data.csv_source import CsvPairs
    from trainer.data.failures import DecodeFailures

    dataset = CsvPairs(rows, tmp_path, SIZE, CTX, DecodeFailures())
    images, tokens, skipped = collate_pairs([dataset[i] for i in range(len(dataset))])
    assert images.shape[0] == 0 and skipped == 6 and dataset.failures.count == 6


def test_csv_images_are_decoded_once_within_the_budget_and_give_the_same_items(tmp_path, monkeypatch):
    from trainer.data import csv_source
    from trainer.data.csv_source import CsvPairs
    from trainer.data.failures import DecodeFailures

    _csv_dataset(tmp_path, n=4)
    (tmp_path / "img" / "3.png").write_bytes(b"\x89PNG broken")
    rows = [(f"img/{i}.png", f"picture number {i}") for i in range(4)]
    # room for two 20 x 12 RGB images
    monkeypatch.setattr(csv_source, "DECODED_CACHE_BYTES", 2 * 20 * 12 * 3)
    cached = CsvPairs(rows, tmp_path, SIZE, CTX, DecodeFailures())
    monkeypatch.setattr(csv_source, "DECODED_CACHE_BYTES", 0)
    fresh = CsvPairs(rows, tmp_path, SIZE, CTX, DecodeFailures())
    decodes = []
    real = csv_source.decode_image
    monkeypatch.setattr(csv_source, "decode_image", lambda *args: decodes.append(args[1]) or real(*args))
    for _ in range(2):
        for i in range(3):
            (a_image, a_tokens), (b_image, b_tokens) = cached[i], fresh[i]
            assert torch.equal(a_image, b_image) and torch.equal(a_tokens, b_tokens)
        assert cached[3] is None and fresh[3] is None
    # images 0 and 1 fill the budget: cached decodes them once, image 2 and the broken one on each access
    assert sorted(decodes).count(str(tmp_path / "img" / "0.png")) == 3 and decodes.count(str(tmp_path / "img" / "2.png")) == 4
    assert cached.failures.count == 2 and fresh.failures.count == 2
    assert cached._decoded.bytes == 2 * 20 * 12 * 3 and fresh._decoded.bytes == 0
    # the training view shares the evaluation view's decoded images
    assert cached.augmented()._decoded is cached._decoded


def test_real_training_images_get_timm_random_resized_crops_and_evaluation_images_do_not(tmp_path):
    rows = []
    for i in range(10):
        (tmp_path / "img").mkdir(exist_ok=True)
        gradient = np.linspace(0, 255, 48 * 64 * 3).reshape(48, 64, 3).astype(np.uint8)
        Image.fromarray(np.roll(gradient, 7 * i, axis=1)).save(tmp_path / "img" / f"{i}.png")
        rows.append((f"img/{i}.png", f"picture number {i}"))
    _write_csv(tmp_path / "pairs.csv", rows)
    bundle = build_data(DataConfig(source="csv", path=str(tmp_path / "pairs.csv"), val_fraction=0.2, arch_fraction=0.1), SIZE, CTX)
    import random

    random.seed(0)
    first, second = bundle.train[0][0], bundle.train[0][0]
    assert first.shape == (3, SIZE, SIZE) and not torch.equal(first, second)  # a new crop on every read
    number = int(bundle.arch.caption(0).split()[-1])
    assert torch.equal(bundle.arch[0][0], to_model_tensor(Image.open(tmp_path / "img" / f"{number}.png"), SIZE))
    random.seed(0)
    assert torch.equal(bundle.train[0][0], first)  # timm's crops draw from Python's generator (checkpointed: exact resume)

