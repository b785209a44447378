"""Image pipelines. Evaluation (and every generated image): RGB, bicubic resize of the shorter side,
center crop, scale to [0, 1], normalize with OpenAI CLIP's mean and std (the open_clip default).
Training on real images (CSV, webdataset) with `data.augment`: timm's random-resized crop at scale
0.9-1.0, bicubic, no flip (captions say "left of"), the same normalization, as open_clip trains."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform

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


class EvalTransform:
    """`to_model_tensor` at a fixed size, as a picklable callable (DataLoader workers)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return to_model_tensor(image, self.size)


class TrainTransform:
    """The training augmentation of real images (see the module docstring), from timm."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.augment = create_transform(
            input_size=size, is_training=True, scale=(0.9, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.0, color_jitter=None,
            interpolation="bicubic", mean=OPENAI_MEAN, std=OPENAI_STD,
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.augment(image.convert("RGB"))
