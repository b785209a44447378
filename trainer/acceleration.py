"""GPU speed settings shared by the trainer and the Gumbel search; on CPU they change nothing.

- TF32: on CUDA, fp32 matrix products and convolutions run on TF32 tensor cores (bf16 autocast
  regions are unaffected). Scoring turns it off again for its own fp32 passes
  (`trainer.evaluation.precision`).
- `train.compile`: the model's forward (and so its backward) compiled in place with `torch.compile`
  (`nn.Module.compile`: parameter names, checkpoints and DDP wrapping stay as they are). Off by
  default until `scripts/gpu_check.sh` has measured its effect on a GPU.
"""
from __future__ import annotations

import torch
from torch import nn


def enable_tf32(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def maybe_compile(model: nn.Module, enabled: bool) -> None:
    if enabled:
        model.compile()
