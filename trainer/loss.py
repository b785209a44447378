"""Symmetric InfoNCE (CLIP's contrastive loss) over the global batch of all processes.

Each process scores its own rows against the features gathered from every process (open_clip's
"local loss" with `gather_with_grad`): gradients reach every process's features through the gather,
and DDP's gradient averaging then yields exactly the gradient of the loss over the whole global
batch, so N processes train like one process with the same global batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.distributed import World, gather_rows

SINGLE = World()


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    world: World = SINGLE,
) -> torch.Tensor:
    """Symmetric cross-entropy between image->text and text->image similarity logits.

    `image_features`, `text_features`: this process's L2-normalized rows (row i of each is a pair);
    `logit_scale`: the exponentiated temperature (the model's `logit_scale.exp()`).

    Returned per process as `world_size * (sum of this process's row losses) / global rows`: its
    mean over processes (what DDP averages) is the mean loss over the global batch, also when
    processes hold different numbers of rows.
    """
    local_rows = image_features.shape[0]
    both = torch.cat([image_features, text_features], dim=1)
    gathered, offset = gather_rows(both, world)
    width = image_features.shape[1]
    all_images, all_texts = gathered[:, :width], gathered[:, width:]
    labels = torch.arange(local_rows, device=image_features.device) + offset
    logits_per_image = logit_scale * image_features @ all_texts.T
    logits_per_text = logit_scale * text_features @ all_images.T
    total = F.cross_entropy(logits_per_image, labels, reduction="sum") + F.cross_entropy(
        logits_per_text, labels, reduction="sum"
    )
    return total * world.world_size / (2 * gathered.shape[0])
