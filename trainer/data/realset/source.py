"""`data.source: real`: the set `sharenas data build DIR` made, read from `data.path: DIR`.

Its split is the build's (fixed by image), so `val_fraction` does not apply: `train.csv` gives the
training pairs, of which `arch_fraction` (chosen with `seed`) form the architecture split, and
`heldout.csv` gives every evaluation:
- `heldout/real/loss`: the contrastive loss over all held-out pairs in fixed batches (the bench metric);
- retrieval `real`: R@K both ways over the first `max_eval_images` held-out pairs;
- zero-shot tasks from the manifest (clip-art categories, emoji groups) with their prompt templates.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainer.data.bundle import DataBundle
from trainer.data.config import DataConfig
from trainer.data.csv_source import CsvPairs, read_pairs_csv
from trainer.data.errors import DataError
from trainer.data.failures import DecodeFailures
from trainer.data.pairs import SubsetPairs, materialize_pairs
from trainer.data.realset.captions import keyword_subset
from trainer.data.realset.manifest import ZeroShotSpec, read_manifest
from trainer.data.tasks import ZeroShotTask

HELDOUT_NAME = "real"


def _rows(root: Path, split: str, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    import csv

    path = root / f"{split}.csv"
    read_pairs_csv(path, "filepath", "caption", ",")  # checks the file and its columns, with the fix in the message
    with path.open(newline="", encoding="utf-8") as handle:
        return [tuple(row[c] for c in columns) for row in csv.DictReader(handle)]


def capped(n: int, limit: int) -> list[int]:
    """All of 0..n-1, or a fixed random `limit` of them (in order) when there are more."""
    return list(range(n)) if n <= limit else sorted(np.random.default_rng(0).permutation(n)[:limit].tolist())


def _zeroshot(root: Path, rows: list[tuple[str, ...]], manifest: dict, image_size: int, context_length: int, failures: DecodeFailures,
              limit: int) -> list[ZeroShotTask]:
    tasks = []
    for spec in map(ZeroShotSpec.from_dict, manifest["zeroshot"]):
        index = {c: i for i, c in enumerate(spec.classes)}
        chosen = [(path, caption, index[category]) for path, caption, source, category in rows if source == spec.source and category in index]
        dataset = CsvPairs([(p, c) for p, c, _ in chosen], root, image_size, context_length, failures)
        images, labels = [], []
        for i in capped(len(chosen), limit):
            item, label = dataset[i], chosen[i][2]
            if item is not None:
                images.append(item[0])
                labels.append(label)
        if not images:
            raise DataError(f"{root}: no held-out images decode for the zero-shot task {spec.name!r}; rebuild the set")
        tasks.append(ZeroShotTask(spec.name, torch.stack(images), torch.tensor(labels), spec.classnames, spec.templates))
    return tasks


def _training_view(pairs: CsvPairs, cfg: DataConfig) -> CsvPairs:
    """The training pairs with the configured image and caption augmentations."""
    out = pairs.augmented() if cfg.augment else pairs
    return out.with_caption_view(keyword_subset) if cfg.caption_augment == "keywords" else out


def build_real(cfg: DataConfig, image_size: int, context_length: int, failures: DecodeFailures) -> DataBundle:
    root = Path(cfg.path or "").expanduser()
    manifest = read_manifest(root)
    if manifest["image_size"] < image_size:
        raise DataError(f"{root} stores {manifest['image_size']} px images but the model takes {image_size} px; rebuild with a larger size")
    train_rows = _rows(root, "train", ("filepath", "caption"))
    held_rows = _rows(root, "heldout", ("filepath", "caption", "source", "category"))
    train_all = CsvPairs(train_rows, root, image_size, context_length, failures)
    order = np.random.default_rng(cfg.seed).permutation(len(train_all))
    n_arch = round(len(train_all) * cfg.arch_fraction)
    arch, train = sorted(order[:n_arch].tolist()), sorted(order[n_arch:].tolist())
    heldout = CsvPairs([(p, c) for p, c, _, _ in held_rows], root, image_size, context_length, failures)
    return DataBundle(
        train=SubsetPairs(_training_view(train_all, cfg), train),
        arch=SubsetPairs(train_all, arch) if arch else None,
        val_pairs=[materialize_pairs(HELDOUT_NAME, heldout, capped(len(heldout), cfg.max_eval_images), context_length)],
        zeroshot=_zeroshot(root, held_rows, manifest, image_size, context_length, failures, cfg.max_eval_images),
        decode_failures=failures,
        heldout=heldout,
        heldout_name=HELDOUT_NAME,
    )
