"""Generated images of coloured shapes with compositional captions, rendered on demand.

A scene holds one object ("a small red circle.") or two objects in a spatial relation ("a small
red circle left of a large blue square."). Colours: red, green, blue, yellow, purple, orange;
shapes: circle, square, triangle, cross; sizes: small, large; relations: left of, right of,
above, below.

Held-out combinations (`HELDOUT_COMBOS`): red triangle, green square, blue circle, yellow cross.
No training, architecture-split or retrieval image contains them, while each of their colours
and shapes appears with other partners, so the "shapes" zero-shot task (single objects of the
held-out combinations, classified among all 24 colour-shape names) measures compositional
generalization.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from .bundle import DataBundle
from .collate import Item
from .config import DataConfig
from .failures import DecodeFailures
from .pairs import PairDataset, SubsetPairs, split_indices
from .tasks import PairSet, ZeroShotTask
from .text import tokenize
from .transforms import to_model_tensor

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 70, 215),
    "yellow": (235, 205, 35),
    "purple": (135, 55, 175),
    "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle", "cross")
SIZE_EXTENTS = {"small": 0.11, "large": 0.18}  # half-extent as a fraction of the canvas
RELATIONS = ("left of", "right of", "above", "below")
HELDOUT_COMBOS: tuple[tuple[str, str], ...] = (("red", "triangle"), ("green", "square"), ("blue", "circle"), ("yellow", "cross"))
SHAPE_CLASSES: tuple[str, ...] = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)
ZEROSHOT_TEMPLATES = ("a {}.", "a photo of a {}.", "a small {}.", "a large {}.")
SEEN_COMBOS: tuple[tuple[str, str], ...] = tuple(
    (colour, shape) for colour in COLOURS for shape in SHAPES if (colour, shape) not in HELDOUT_COMBOS
)

_SINGLE_TEMPLATES = ("a {}.", "a photo of a {}.")
_TWO_TEMPLATES = ("a {} {} a {}.", "a photo of a {} {} a {}.")
_SWAPPED = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_STREAM_POOL, _STREAM_ZEROSHOT = 1, 2


@dataclass(frozen=True)
class ShapeObject:
    colour: str
    shape: str
    size: str
    x: float  # centre, fraction of the canvas
    y: float
    rgb: tuple[int, int, int]

    @property
    def phrase(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one image and its caption, so rendering is deterministic."""

    objects: tuple[ShapeObject, ...]
    relation: Optional[str]  # how objects[0] relates to objects[1]
    background: tuple[int, int, int]
    caption: str

    @property
    def content(self) -> tuple:
        """What the caption asserts, identical for the two phrasings of one two-object layout."""
        if self.relation is None:
            return (self.objects[0].phrase,)
        first, second = self.objects
        if self.relation in ("right of", "below"):
            return (second.phrase, _SWAPPED[self.relation], first.phrase)
        return (first.phrase, self.relation, second.phrase)


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _sample_object(rng: np.random.Generator, combo: tuple[str, str], x: float, y: float, size: str) -> ShapeObject:
    colour, shape = combo
    return ShapeObject(colour, shape, size, x, y, _jitter(rng, COLOURS[colour], 15))


def sample_scene(rng: np.random.Generator, combos: tuple[tuple[str, str], ...], n_objects: int) -> Scene:
    """A random scene of `n_objects` (1 or 2) objects whose colour-shape pairs come from `combos`."""
    grey = int(rng.integers(215, 246))
    background = _jitter(rng, (grey, grey, grey), 6)
    sizes = [str(rng.choice(list(SIZE_EXTENTS))) for _ in range(n_objects)]
    picks = [combos[int(rng.integers(len(combos)))] for _ in range(n_objects)]
    if n_objects == 1:
        r = SIZE_EXTENTS[sizes[0]]
        obj = _sample_object(rng, picks[0], float(rng.uniform(r + 0.02, 1 - r - 0.02)), float(rng.uniform(r + 0.02, 1 - r - 0.02)), sizes[0])
        caption = str(rng.choice(_SINGLE_TEMPLATES)).format(obj.phrase)
        return Scene((obj,), None, background, caption)
    relation = str(rng.choice(RELATIONS))
    # Slot 0 is left (or top), slot 1 right (or bottom); the two halves never overlap.
    along = [float(rng.uniform(SIZE_EXTENTS[s] + 0.01, 0.49 - SIZE_EXTENTS[s])) for s in sizes]
    first_slot = 0 if relation in ("left of", "above") else 1
    along[0] = along[0] + 0.5 * first_slot
    along[1] = along[1] + 0.5 * (1 - first_slot)
    band = float(rng.uniform(0.3, 0.7))
    across = [float(np.clip(band + rng.uniform(-0.06, 0.06), SIZE_EXTENTS[s] + 0.01, 1 - SIZE_EXTENTS[s] - 0.01)) for s in sizes]
    horizontal = relation in ("left of", "right of")
    objects = tuple(
        _sample_object(rng, picks[i], along[i] if horizontal else across[i], across[i] if horizontal else along[i], sizes[i])
        for i in range(2)
    )
    caption = str(rng.choice(_TWO_TEMPLATES)).format(objects[0].phrase, relation, objects[1].phrase)
    return Scene(objects, relation, background, caption)


def render_scene(scene: Scene, canvas: int) -> Image.Image:
    """Draw `scene` on a `canvas` x `canvas` RGB image (drawn larger than the model's input so the
    downscaling transform anti-aliases the edges)."""
    image = Image.new("RGB", (canvas, canvas), scene.background)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        x, y, r = obj.x * canvas, obj.y * canvas, SIZE_EXTENTS[obj.size] * canvas
        if obj.shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=obj.rgb)
        elif obj.shape == "square":
            h = 0.85 * r
            draw.rectangle((x - h, y - h, x + h, y + h), fill=obj.rgb)
        elif obj.shape == "triangle":
            draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=obj.rgb)
        else:
            w = 0.33 * r
            draw.rectangle((x - r, y - w, x + r, y + w), fill=obj.rgb)
            draw.rectangle((x - w, y - r, x + w, y + r), fill=obj.rgb)
    return image


def _sample_scenes(stream: list[int], count: int, combos: tuple[tuple[str, str], ...], single_only: bool = False) -> list[Scene]:
    rng = np.random.default_rng(stream)
    return [sample_scene(rng, combos, 1 if single_only or rng.random() < 0.4 else 2) for _ in range(count)]


class ShapesDataset(PairDataset):
    """Renders scene i on each read (about 0.1 ms at 32 px); captions are tokenized once."""

    def __init__(self, scenes: list[Scene], image_size: int, context_length: int) -> None:
        self.scenes = scenes
        self.image_size = image_size
        self.tokens = tokenize([scene.caption for scene in scenes], context_length)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> Optional[Item]:
        return self.image(index), self.tokens[index]

    def image(self, index: int) -> torch.Tensor:
        return to_model_tensor(render_scene(self.scenes[index], 2 * self.image_size), self.image_size)

    def caption(self, index: int) -> str:
        return self.scenes[index].caption


def build_shapes(cfg: DataConfig, image_size: int, context_length: int, failures: DecodeFailures) -> DataBundle:
    """Train / arch / retrieval splits of `cfg.num_shapes` scenes of seen combinations, and the
    compositional zero-shot task on single objects of the held-out combinations."""
    pool = ShapesDataset(_sample_scenes([cfg.seed, _STREAM_POOL], cfg.num_shapes, SEEN_COMBOS), image_size, context_length)
    train, arch, val = split_indices(len(pool), cfg.val_fraction, cfg.arch_fraction, cfg.seed)
    # Retrieval needs one right answer per query: keep one scene per distinct content.
    seen_content: set[tuple] = set()
    val_unique = []
    for index in val:
        if pool.scenes[index].content not in seen_content:
            seen_content.add(pool.scenes[index].content)
            val_unique.append(index)
    val_unique = val_unique[: cfg.max_eval_images]
    val_set = PairSet(
        name="shapes",
        images=torch.stack([pool.image(i) for i in val_unique]),
        tokens=pool.tokens[val_unique],
        captions=tuple(pool.caption(i) for i in val_unique),
    )
    per_class = min(cfg.shapes_zeroshot_per_class, max(1, cfg.max_eval_images // len(HELDOUT_COMBOS)))
    zs_scenes = [
        scene
        for k, combo in enumerate(HELDOUT_COMBOS)
        for scene in _sample_scenes([cfg.seed, _STREAM_ZEROSHOT, k], per_class, (combo,), single_only=True)
    ]
    zs_pool = ShapesDataset(zs_scenes, image_size, context_length)
    zeroshot = ZeroShotTask(
        name="shapes",
        images=torch.stack([zs_pool.image(i) for i in range(len(zs_pool))]),
        labels=torch.tensor([SHAPE_CLASSES.index(f"{s.objects[0].colour} {s.objects[0].shape}") for s in zs_scenes]),
        classnames=SHAPE_CLASSES,
        templates=ZEROSHOT_TEMPLATES,
    )
    return DataBundle(
        train=SubsetPairs(pool, train),
        arch=SubsetPairs(pool, arch) if arch else None,
        val_pairs=[val_set],
        zeroshot=[zeroshot],
        decode_failures=failures,
    )


def fresh_shapes(count: int, seed: int, image_size: int, context_length: int) -> ShapesDataset:
    """`count` scenes of the seen combinations drawn from the pool stream of `seed`: with a seed other
    than the training data's, a large held-out set of pairs that no training split contains."""
    return ShapesDataset(_sample_scenes([seed, _STREAM_POOL], count, SEEN_COMBOS), image_size, context_length)
