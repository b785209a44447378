"""Image-caption pairs listed in a CSV file: one row per pair, an image path column and a caption
column (names and separator configurable). Everything that can be checked before training is
checked at construction; an image that fails to decode later is skipped and counted."""
from __future__ import annotations

import copy
import csv
import logging
from pathlib import Path
from typing import Callable, Optional

from PIL import Image

from .bundle import DataBundle, split_user_pairs
from .collate import Item
from .config import DataConfig
from .errors import DataError
from .failures import DecodeFailures, decode_image
from .pairs import PairDataset
from .text import tokenize
from .transforms import EvalTransform, TrainTransform

logger = logging.getLogger(__name__)


def read_pairs_csv(path: Path, image_column: str, caption_column: str, separator: str) -> list[tuple[str, str]]:
    """(image path as written, caption) per usable row; rows with an empty path or caption are
    dropped with one warning."""
    if not path.is_file():
        raise DataError(f"CSV file not found: {path} (set data.path to an existing file)")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, delimiter=separator)
        columns = reader.fieldnames or []
        for column, field in ((image_column, "image_column"), (caption_column, "caption_column")):
            if column not in columns:
                present = ", ".join(repr(c) for c in columns) or "none"
                raise DataError(
                    f"CSV {path} has no column {column!r} (data.{field}); columns present: {present} "
                    f"(read with separator {separator!r}; set data.{field} or data.separator)"
                )
        rows, dropped = [], 0
        for row in reader:
            image, caption = (row.get(image_column) or "").strip(), (row.get(caption_column) or "").strip()
            if image and caption:
                rows.append((image, caption))
            else:
                dropped += 1
    if dropped:
        logger.warning("CSV %s: dropped %d rows with an empty image path or caption", path, dropped)
    if not rows:
        raise DataError(f"CSV {path} has no rows with both an image path and a caption")
    return rows


DECODED_CACHE_BYTES = 512 * 2**20
"""RGB bytes of decoded images one `CsvPairs` (and its views) keeps in memory. A small set (the real set's
6,056 training images of 64 px take 74 MB) is then decoded once per process rather than once per epoch
and per evaluation; the images past the budget of a larger set are read from disk on each access."""


class DecodedImages:
    """Decoded images by index, up to `budget` bytes, shared by the views of one `CsvPairs`. Decoding is
    deterministic, so a cached image is the one a fresh decode would give (failures are not cached:
    each access records its own)."""

    def __init__(self, budget: int | None = None) -> None:
        self.images: dict[int, Image.Image] = {}
        self.bytes, self.budget = 0, DECODED_CACHE_BYTES if budget is None else budget

    def get(self, index: int, decode: Callable[[], Image.Image | None]) -> Image.Image | None:
        image = self.images.get(index)
        if image is None:
            image = decode()
            size = 0 if image is None else len(image.getbands()) * image.width * image.height
            if image is not None and self.bytes + size <= self.budget:
                self.images[index] = image
                self.bytes += size
        return image


class CsvPairs(PairDataset):
    """Reads and transforms image i on each access (decoded once while `DecodedImages`' budget lasts);
    None (counted) if it fails to decode."""

    def __init__(self, rows: list[tuple[str, str]], image_root: Path, image_size: int, context_length: int, failures: DecodeFailures) -> None:
        self.rows = rows
        self.image_root = image_root
        self.image_size = image_size
        self.context_length = context_length
        self.failures = failures
        self.transform: EvalTransform | TrainTransform = EvalTransform(image_size)
        self.caption_view: Callable[[str, int, int, int], str] | None = None
        """`(caption, seed, epoch, index) -> caption` drawn per epoch (e.g. `realset.captions.keyword_subset`)."""
        self._epoch: tuple[int, int] = (0, 0)
        self._decoded = DecodedImages()

    def augmented(self) -> "CsvPairs":
        """The same pairs with the training augmentation (the evaluation splits keep this one)."""
        out = copy.copy(self)
        out.transform = TrainTransform(self.image_size)
        return out

    def with_caption_view(self, view: Callable[[str, int, int, int], str]) -> "CsvPairs":
        """The same pairs whose captions are drawn by `view` each epoch (see `set_epoch`)."""
        out = copy.copy(self)
        out.caption_view = view
        return out

    def set_epoch(self, seed: int, epoch: int) -> None:
        self._epoch = (seed, epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def image_path(self, index: int) -> Path:
        return self.image_root / self.rows[index][0]

    def __getitem__(self, index: int) -> Optional[Item]:
        path = self.image_path(index)
        image = self._decoded.get(index, lambda: decode_image(path, str(path), self.failures))
        if image is None:
            return None
        caption = self.rows[index][1]
        if self.caption_view is not None:
            caption = self.caption_view(caption, *self._epoch, index)
        return self.transform(image), tokenize(caption, self.context_length)[0]

    def caption(self, index: int) -> str:
        return self.rows[index][1]


def build_csv(cfg: DataConfig, image_size: int, context_length: int, failures: DecodeFailures) -> DataBundle:
    """Train / arch / retrieval splits of the CSV's rows (no zero-shot tasks: the classes are unknown)."""
    if not cfg.path:
        raise DataError("data.path: the csv source needs the path of a CSV file")
    csv_path = Path(cfg.path).expanduser()
    rows = read_pairs_csv(csv_path, cfg.image_column, cfg.caption_column, cfg.separator)
    image_root = Path(cfg.image_root).expanduser() if cfg.image_root else csv_path.parent
    if not image_root.is_dir():
        raise DataError(f"image directory not found: {image_root} (data.image_root; CSV image paths are resolved against it)")
    dataset = CsvPairs(rows, image_root, image_size, context_length, failures)
    return split_user_pairs(dataset, cfg, context_length, failures)
