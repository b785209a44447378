"""The real handwritten digits that ship with scikit-learn (1797 images, 8x8, no download), drawn
in light ink on a dark background and captioned from templates that name the digit.

The images are split per class, deterministically for the seed, into held-out (`val_fraction`),
architecture (`arch_fraction`) and training images. Training uses `digit_repeats` renderings of
each training image; ink and background brightness, scale, a shift of a few pixels and the
caption template vary. The variation is kept small on purpose: it is the digit, not its colour
or position, that a tiny model has to pick up in a few minutes, and captions name nothing else.

The held-out images feed the "digits" zero-shot task (10-way, prompts in the captions' style),
the test side of the "digits" linear probe (whose train side comes from the training images)
and a retrieval set of one held-out image per digit captioned "a handwritten digit {name}."
(ten pairs, so every caption has a single right image).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np
import torch
from PIL import Image

from .bundle import DataBundle
from .collate import Item
from .config import DataConfig
from .failures import DecodeFailures
from .pairs import PairDataset
from .tasks import LinearProbeTask, ZeroShotTask
from .text import tokenize
from .transforms import to_model_tensor

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ZEROSHOT_TEMPLATES = ("a handwritten digit {}.", "the number {}.", "a photo of the digit {}.")
CAPTION_TEMPLATES = ZEROSHOT_TEMPLATES + ("a drawing of the number {}.",)
_STREAM_TRAIN, _STREAM_ARCH, _STREAM_HELDOUT = 11, 12, 13


@lru_cache(maxsize=1)
def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [1797, 8, 8] scaled to 0..255, labels int64 [1797]) from scikit-learn."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return images, digits.target.astype(np.int64)


@dataclass(frozen=True)
class DigitRendering:
    """One drawing of source image `source`: everything random is fixed here, so reads repeat."""

    source: int
    label: int
    ink: tuple[int, int, int]
    background: tuple[int, int, int]
    scale: float  # side of the digit box as a fraction of the canvas
    offset: tuple[float, float]  # top-left corner of the box, fraction of the free margin
    caption: str


def _sample_rendering(rng: np.random.Generator, source: int, label: int, template: str | None = None) -> DigitRendering:
    light, dark = int(rng.integers(200, 256)), int(rng.integers(0, 50))
    template = template or str(rng.choice(CAPTION_TEMPLATES))
    return DigitRendering(
        source=source,
        label=label,
        ink=tuple(int(np.clip(light + rng.integers(-10, 11), 0, 255)) for _ in range(3)),
        background=tuple(int(np.clip(dark + rng.integers(-5, 6), 0, 255)) for _ in range(3)),
        scale=float(rng.uniform(0.8, 0.95)),
        offset=(float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.25, 0.75))),
        caption=template.format(DIGIT_NAMES[label]),
    )


def render_digit(rendering: DigitRendering, canvas: int) -> Image.Image:
    """Upscale the 8x8 source image (bicubic) into its box on a `canvas` x `canvas` background."""
    images, _ = load_digit_images()
    side = max(8, round(rendering.scale * canvas))
    alpha = np.asarray(Image.fromarray(images[rendering.source]).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    left = round(rendering.offset[0] * (canvas - side))
    top = round(rendering.offset[1] * (canvas - side))
    background = np.asarray(rendering.background, dtype=np.float32)
    pixels = np.broadcast_to(background, (canvas, canvas, 3)).copy()
    ink = np.asarray(rendering.ink, dtype=np.float32)
    box = pixels[top:top + side, left:left + side]
    box += alpha[..., None] * (ink - box)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class DigitsDataset(PairDataset):
    """Draws rendering i on each read; captions are tokenized once."""

    def __init__(self, renderings: list[DigitRendering], image_size: int, context_length: int) -> None:
        self.renderings = renderings
        self.image_size = image_size
        self.tokens = tokenize([r.caption for r in renderings], context_length)

    def __len__(self) -> int:
        return len(self.renderings)

    def __getitem__(self, index: int) -> Optional[Item]:
        return self.image(index), self.tokens[index]

    def image(self, index: int) -> torch.Tensor:
        return to_model_tensor(render_digit(self.renderings[index], self.image_size), self.image_size)

    def images(self, indices: list[int]) -> torch.Tensor:
        return torch.stack([self.image(i) for i in indices])

    def caption(self, index: int) -> str:
        return self.renderings[index].caption


def split_digits(val_fraction: float, arch_fraction: float, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Stratified (train, arch, held-out) indices into the 1797 images, each in class-interleaved order."""
    _, labels = load_digit_images()
    rng = np.random.default_rng([seed, 10])
    parts: tuple[list[list[int]], ...] = ([], [], [])
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit)).tolist()
        n_val, n_arch = max(1, round(len(members) * val_fraction)), round(len(members) * arch_fraction)
        parts[2].append(members[:n_val])
        parts[1].append(members[n_val:n_val + n_arch])
        parts[0].append(members[n_val + n_arch:])
    return tuple(_interleave(groups) for groups in parts)


def _interleave(groups: list[list[int]]) -> list[int]:
    """Round-robin over the classes, so any prefix is close to class-balanced."""
    longest = max(len(group) for group in groups)
    return [group[i] for i in range(longest) for group in groups if i < len(group)]


def build_digits(cfg: DataConfig, image_size: int, context_length: int, failures: DecodeFailures) -> DataBundle:
    """Digits train/arch splits, zero-shot and linear-probe tasks. No retrieval set: every image of a
    digit has the same caption, so image-text retrieval would be zero-shot with one template (over 10
    pairs, R@5 is 50% by chance and R@10 always 100%)."""
    _, labels = load_digit_images()
    train_idx, arch_idx, held_idx = split_digits(cfg.val_fraction, cfg.arch_fraction, cfg.seed)

    rng = np.random.default_rng([cfg.seed, _STREAM_TRAIN])
    train = DigitsDataset(
        [_sample_rendering(rng, i, int(labels[i])) for _ in range(cfg.digit_repeats) for i in train_idx], image_size, context_length
    )
    rng = np.random.default_rng([cfg.seed, _STREAM_ARCH])
    arch = DigitsDataset([_sample_rendering(rng, i, int(labels[i])) for i in arch_idx], image_size, context_length) if arch_idx else None

    rng = np.random.default_rng([cfg.seed, _STREAM_HELDOUT])
    held_renderings = [_sample_rendering(rng, i, int(labels[i]), ZEROSHOT_TEMPLATES[0]) for i in held_idx[: cfg.max_eval_images]]
    held = DigitsDataset(held_renderings, image_size, context_length)
    held_images = held.images(list(range(len(held))))
    held_labels = torch.tensor([r.label for r in held_renderings])
    probe_positions = list(range(min(len(train_idx), cfg.max_eval_images)))  # first repeat, class-interleaved
    probe = LinearProbeTask(
        name="digits",
        train_images=train.images(probe_positions),
        train_labels=torch.tensor([train.renderings[p].label for p in probe_positions]),
        test_images=held_images,
        test_labels=held_labels,
        classnames=DIGIT_NAMES,
    )
    zeroshot = ZeroShotTask(name="digits", images=held_images, labels=held_labels, classnames=DIGIT_NAMES, templates=ZEROSHOT_TEMPLATES)
    return DataBundle(train=train, arch=arch, val_pairs=[], zeroshot=[zeroshot], linear_probe=[probe], decode_failures=failures)
