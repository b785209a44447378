"""Images that fail to decode: skipped, counted, and warned about once per file, never a crash."""
from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

from PIL import Image

logger = logging.getLogger(__name__)


class DecodeFailures:
    """Counts every skipped item (a file that fails twice counts twice) and remembers the failed files.

    Each process keeps its own count: DataLoader workers count in their copies, so the per-batch
    `n_skipped` returned by `collate_pairs` is what a training loop should sum; `count` here covers
    what this process decoded itself (evaluation sets, or loading with `num_workers=0`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.files: set[str] = set()

    def record(self, name: str, error: BaseException) -> None:
        with self._lock:
            self.count += 1
            first = name not in self.files
            self.files.add(name)
        if first:
            logger.warning("skipping image that failed to decode: %s (%s: %s)", name, type(error).__name__, error)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def decode_image(source: str | Path | bytes, name: str, failures: DecodeFailures) -> Image.Image | None:
    """Open a file path or encoded bytes as an RGB image, or record the failure and return None."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return image.convert("RGB")
    except Exception as error:  # noqa: BLE001 - decoders of untrusted files raise many types; none may stop training
        failures.record(name, error)
        return None
