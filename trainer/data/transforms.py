"""The single image pipeline every source uses: RGB, bicubic resize of the shorter side, center crop,
scale to [0, 1], normalize with OpenAI CLIP's mean and std (the open_clip default)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_MEAN = torch.tensor(OPENAI_MEAN).view(3, 1, 1)
_STD = torch.tensor(OPENAI_STD).view(3, 1, 1)


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is `size` (bicubic), then crop the central `size` x `size` square."""
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    if (new_w, new_h) != (size, size):
        image = image.crop((left, top, left + size, top + size))
    return image


def to_model_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """FloatTensor[3, size, size] ready for the model (see the module docstring)."""
    image = resize_center_crop(image.convert("RGB"), size)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
    return (pixels - _MEAN) / _STD


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """Undo the normalization (for previews and reports): values back in [0, 1]."""
    return (images * _STD.to(images) + _MEAN.to(images)).clamp(0.0, 1.0)
