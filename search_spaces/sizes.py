"""Model sizes: the fixed geometry a sharing policy is realised at."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSize:
    """Geometry of one model size. Every size keeps 12 layers so every policy is expressible."""

    name: str
    image_size: int
    patch_size: int
    width: int
    layers: int
    head_width: int
    mlp_ratio: float
    context_length: int
    vocab_size: int
    embed_dim: int
    narrow_text_width: int
    """Text width of the non-shared `clip` preset (512 for the B sizes, as in CLIP)."""

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        """Patch tokens per side of the vision token map."""
        return self.image_size // self.patch_size

    def text_heads(self, text_width: int) -> int:
        return text_width // self.head_width


SIZES: dict[str, ModelSize] = {
    s.name: s
    for s in (
        ModelSize("b32", 224, 32, 768, 12, 64, 4.0, 77, 49408, 512, 512),
        ModelSize("b16", 224, 16, 768, 12, 64, 4.0, 77, 49408, 512, 512),
        ModelSize("small", 64, 8, 256, 12, 32, 4.0, 32, 49408, 256, 192),
        ModelSize("mini", 32, 8, 128, 12, 32, 4.0, 32, 49408, 128, 96),
        ModelSize("tiny", 32, 8, 64, 12, 16, 4.0, 32, 49408, 64, 48),
    )
}


def get_size(size: str | ModelSize) -> ModelSize:
    """Look a size up by name (`b32`, `b16`, `small`, `mini`, `tiny`); a `ModelSize` passes through."""
    if isinstance(size, ModelSize):
        return size
    try:
        return SIZES[size]
    except KeyError:
        raise ValueError(f"unknown size {size!r}: choose one of {', '.join(SIZES)}") from None
