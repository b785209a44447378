"""Webdataset-style tar shards read with the standard library, as a map-style dataset.

A sample is the group of members sharing a key (the member name up to the first dot of its
file name): an image (jpg, jpeg, png or webp) and a caption (txt). Each shard's members are
indexed once at construction; reading sample i seeks to the stored data offsets, so shards must
be uncompressed `.tar` files. `path` may hold brace patterns: "shard-{000..009}.tar",
"{train,extra}-{0..3}.tar".
"""
from __future__ import annotations

import copy
import logging
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Optional

from .bundle import DataBundle, split_user_pairs
from .collate import Item
from .config import DataConfig
from .errors import DataError
from .failures import DecodeFailures, decode_image
from .pairs import PairDataset
from .text import tokenize
from .transforms import EvalTransform, TrainTransform

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # preference order when a sample has several
CAPTION_EXTENSION = "txt"
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def expand_braces(pattern: str) -> list[str]:
    """Expand `{a,b}` alternatives and `{000..009}` numeric ranges (zero-padded when an end is),
    left to right, like the `braceexpand` package; a brace group that is neither stays literal."""
    start = pattern.find("{")
    while start != -1:
        depth = 0
        for end in range(start, len(pattern)):
            depth += {"{": 1, "}": -1}.get(pattern[end], 0)
            if depth == 0:
                break
        else:
            return [pattern]  # unbalanced: nothing to expand
        body, head, tail = pattern[start + 1:end], pattern[:start], pattern[end + 1:]
        options = _brace_options(body)
        if options is not None:
            return [expanded for option in options for expanded in expand_braces(head + option + tail)]
        start = pattern.find("{", start + 1)
    return [pattern]


def _brace_options(body: str) -> list[str] | None:
    numeric = _RANGE.match(body)
    if numeric:
        first, last = numeric.group(1), numeric.group(2)
        padded = any(len(end.lstrip("-")) > 1 and end.lstrip("-").startswith("0") for end in (first, last))
        width = max(len(first), len(last)) if padded else 0
        step = 1 if int(last) >= int(first) else -1
        return [str(n).zfill(width) for n in range(int(first), int(last) + step, step)]
    options, depth, current = [], 0, ""
    for char in body:
        if char == "," and depth == 0:
            options.append(current)
            current = ""
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        current += char
    options.append(current)
    return options if len(options) > 1 else None


@dataclass(frozen=True)
class ShardSample:
    shard: int
    key: str
    image_offset: int
    image_size: int
    caption_offset: int
    caption_size: int


def index_shard(path: Path, shard: int) -> list[ShardSample]:
    """The complete (image + caption) samples of one shard, in member order."""
    if not path.is_file():
        raise DataError(f"webdataset shard not found: {path} (check data.path and its brace pattern)")
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, filename = member.name.rpartition("/")
                stem, dot, extension = filename.partition(".")
                if not dot:
                    continue
                key = f"{folder}/{stem}" if folder else stem
                members.setdefault(key, {}).setdefault(extension.lower(), member)
    except tarfile.ReadError as error:
        raise DataError(f"webdataset shard {path} is not an uncompressed tar archive ({error}); write shards as plain .tar") from error
    samples, incomplete = [], 0
    for key, parts in members.items():
        image = next((parts[ext] for ext in IMAGE_EXTENSIONS if ext in parts), None)
        caption = parts.get(CAPTION_EXTENSION)
        if image is None or caption is None:
            incomplete += 1
            continue
        samples.append(ShardSample(shard, key, image.offset_data, image.size, caption.offset_data, caption.size))
    if incomplete:
        logger.warning("shard %s: skipped %d keys without both an image (%s) and a caption (.txt)", path, incomplete, "/".join(IMAGE_EXTENSIONS))
    return samples


class ShardPairs(PairDataset):
    """Random access into indexed shards; file handles are opened lazily per process."""

    def __init__(self, shards: list[Path], image_size: int, context_length: int, failures: DecodeFailures) -> None:
        self._handles: dict[int, BinaryIO] = {}
        self._pid = os.getpid()
        self.shards = shards
        self.samples = [sample for number, path in enumerate(shards) for sample in index_shard(path, number)]
        self.image_size = image_size
        self.context_length = context_length
        self.failures = failures
        self.transform: EvalTransform | TrainTransform = EvalTransform(image_size)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __del__(self) -> None:
        self.close()

    def augmented(self) -> "ShardPairs":
        """The same pairs with the training augmentation (the evaluation splits keep this one)."""
        out = copy.copy(self)
        out.transform = TrainTransform(self.image_size)
        return out

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, shard: int, offset: int, size: int) -> bytes:
        if self._pid != os.getpid():  # a forked DataLoader worker must not share the parent's file offsets
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(shard)
        if handle is None:
            handle = self._handles[shard] = open(self.shards[shard], "rb")
        handle.seek(offset)
        return handle.read(size)

    def name(self, index: int) -> str:
        sample = self.samples[index]
        return f"{self.shards[sample.shard]}:{sample.key}"

    def __getitem__(self, index: int) -> Optional[Item]:
        sample = self.samples[index]
        try:
            data = self._read(sample.shard, sample.image_offset, sample.image_size)
            caption = self.caption(index)
        except OSError as error:
            self.failures.record(self.name(index), error)
            return None
        image = decode_image(data, self.name(index), self.failures)
        if image is None:
            return None
        return self.transform(image), tokenize(caption, self.context_length)[0]

    def caption(self, index: int) -> str:
        sample = self.samples[index]
        return self._read(sample.shard, sample.caption_offset, sample.caption_size).decode("utf-8", errors="replace").strip()


def build_webdataset(cfg: DataConfig, image_size: int, context_length: int, failures: DecodeFailures) -> DataBundle:
    """Train / arch / retrieval splits over all samples of all shards matching `cfg.path`."""
    if not cfg.path:
        raise DataError("data.path: the webdataset source needs a shard path or pattern")
    shards = [Path(p).expanduser() for p in expand_braces(cfg.path)]
    dataset = ShardPairs(shards, image_size, context_length, failures)
    if not len(dataset):
        raise DataError(f"no image+caption samples in the shards matching {cfg.path}")
    return split_user_pairs(dataset, cfg, context_length, failures)
