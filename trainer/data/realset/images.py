"""Images of the real set, made once at build time: transparent drawings composited on white,
cropped to their drawn content, padded to a square and resized to the stored size, then encoded as
PNG with fixed settings (no timestamps or text chunks), so the same inputs give the same bytes.

Some packaged PNGs are enormous (one has 623 megapixels) and Pillow refuses them as decompression
bombs; the build decodes each such file once, with the limit lifted for that file only, and stores
it small, so no epoch ever opens it.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

BACKGROUND = (255, 255, 255)
MARGIN = 0.04
"""Fraction of the side left blank around the drawing."""
BOMB_CEILING = 2_000_000_000
"""Pixels beyond which a file is refused even at build time (a corrupt header, not a drawing)."""
WORKING_SIDE = 2048
"""Decoded images are first reduced (by an integer factor) to about this longer side."""


class BlankImage(ValueError):
    """The image has no visible content (fully transparent or a single colour)."""


@contextlib.contextmanager
def unlimited_pixels() -> Iterator[int | None]:
    """Lift Pillow's process-global pixel limit for the block (the build decodes in processes, one
    file at a time); yields the limit in force before."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield limit
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def load_source(path: Path, size: int) -> tuple[bytes, bool]:
    """The stored PNG of one source file and whether it was a decompression bomb (beyond Pillow's
    limit, decoded anyway up to `BOMB_CEILING` pixels). The decoded image is first reduced by an
    integer factor to about `WORKING_SIDE`. Raises `BlankImage` for an image with nothing drawn."""
    with unlimited_pixels() as limit:
        with Image.open(path) as image:
            pixels = image.width * image.height
            if pixels > BOMB_CEILING:
                raise Image.DecompressionBombError(f"{pixels} pixels is beyond {BOMB_CEILING}: the header is likely corrupt")
            image.load()
            factor = max(image.size) // WORKING_SIDE
            reduced = image.convert("RGBA").reduce(factor) if factor > 1 else image.convert("RGBA")  # reduce needs a true-colour mode
        return prepare(reduced, size), limit is not None and pixels > limit


def flatten(image: Image.Image) -> Image.Image:
    """RGB on a white background, cropped to the drawn (non-transparent, non-background) region."""
    rgba = image.convert("RGBA")
    box = rgba.getchannel("A").getbbox()
    if box is None:
        raise BlankImage("fully transparent")
    rgba = rgba.crop(box)
    canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    canvas.alpha_composite(rgba)
    rgb = canvas.convert("RGB")
    inverted = Image.eval(rgb, lambda v: 255 - v)
    content = inverted.getbbox()
    if content is None:
        raise BlankImage("only background colour")
    return rgb.crop(content)


def square(image: Image.Image, size: int) -> Image.Image:
    """Pad to a square with `MARGIN` on white, then resize to `size` x `size` (Lanczos; huge images are
    first reduced by an integer factor, which is exact and fast)."""
    side = round(max(image.size) * (1 + 2 * MARGIN))
    canvas = Image.new("RGB", (side, side), BACKGROUND)
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    factor = side // (4 * size)
    if factor > 1:
        canvas = canvas.reduce(factor)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with fixed settings and no metadata chunks."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.getvalue()


def prepare(image: Image.Image, size: int) -> bytes:
    """What the set stores for one source image."""
    return encode_png(square(flatten(image), size))
