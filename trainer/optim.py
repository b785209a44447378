"""AdamW with the paper's weight-decay groups, and the warm-up + cosine learning-rate schedule.

Weight decay (MS-CLIP): parameters used by both towers decay with `weight_decay_shared` (0.2),
modality-specific ones with `weight_decay_specific` (0.05). Biases, normalization parameters,
embeddings (token, positional, class) and the logit scale get none, each category configurable via
`optim.no_decay`. A shared tensor is one parameter, so the optimizer sees it once, with the sum of
both towers' gradients.
"""
from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

from trainer.config import OptimConfig

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.RMSNorm)


class SharingModel(Protocol):
    def named_parameters(self): ...

    def named_modules(self): ...

    def param_sharing(self) -> dict[str, str]: ...


def param_category(name: str, module: nn.Module) -> str | None:
    """The no-decay category of a parameter ("bias", "norm", "embedding", "logit_scale"), or None.

    `module` is the module that directly owns the parameter.
    """
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "logit_scale":
        return "logit_scale"
    if isinstance(module, NORM_TYPES):
        return "norm"
    if isinstance(module, nn.Embedding) or "embedding" in leaf:
        return "embedding"
    if leaf == "bias" or leaf.endswith("_bias"):
        return "bias"
    return None


def weight_decays(model: SharingModel, cfg: OptimConfig) -> dict[str, float]:
    """The weight decay of every trainable parameter, by name."""
    sharing = model.param_sharing()
    owners = {}
    for module_name, module in model.named_modules():
        for leaf, _ in module.named_parameters(recurse=False):
            owners[f"{module_name}.{leaf}" if module_name else leaf] = module
    out = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param_category(name, owners[name]) in cfg.no_decay:
            out[name] = 0.0
        elif sharing[name] == "shared":
            out[name] = cfg.weight_decay_shared
        else:
            out[name] = cfg.weight_decay_specific
    return out


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters, one group per weight-decay value.

    Groups are ordered by decreasing decay so the optimizer state layout is stable for checkpoints.
    """
    decays = weight_decays(model, cfg)
    params = dict(model.named_parameters())
    groups: dict[float, list[str]] = {}
    for name, decay in decays.items():
        groups.setdefault(decay, []).append(name)
    param_groups = [
        {"params": [params[n] for n in names], "weight_decay": decay, "lr": cfg.lr}
        for decay, names in sorted(groups.items(), key=lambda kv: -kv[0])
    ]
    impl = "fused" if cfg.implementation == "auto" else cfg.implementation
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=impl == "fused", foreach=impl == "foreach")


def lr_at(step: int, base_lr: float, final_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up to `base_lr` over
    `warmup_steps` (open_clip's `base_lr * (step + 1) / warmup`), then cosine decay to `final_lr`
    at `total_steps`."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 0:
        return base_lr
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return final_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (base_lr - final_lr)


def cooldown_start(cfg: OptimConfig, total_steps: int) -> int:
    """The first step of a `wsd` schedule's cool-down (where a shorter run branches off a longer one)."""
    return total_steps - round(cfg.cooldown_fraction * total_steps)


def scheduled_lr(cfg: OptimConfig, step: int, warmup: int, total_steps: int) -> float:
    """Learning rate of optimizer step `step` under `cfg.schedule`: `cosine` is `lr_at`; `wsd` warms up
    as `lr_at` does, stays at `lr`, and from `cooldown_start` decays as (1 - sqrt(progress)) to
    `final_lr` at `total_steps` (the cool-down shape Hägele et al. 2024 found best)."""
    if cfg.schedule == "cosine" or step < warmup:
        return lr_at(step, cfg.lr, cfg.final_lr, warmup, total_steps)
    start = max(cooldown_start(cfg, total_steps), warmup)
    if step < start:
        return cfg.lr
    progress = min(1.0, (step - start + 1) / max(1, total_steps - start))
    return cfg.final_lr + (1.0 - math.sqrt(progress)) * (cfg.lr - cfg.final_lr)


def warmup_steps(cfg: OptimConfig, steps_per_epoch: int, total_steps: int) -> int:
    """Warm-up length in optimizer steps (from `warmup_epochs` or `warmup_steps`), at most the run."""
    if cfg.warmup_steps is not None:
        steps = cfg.warmup_steps
    elif cfg.warmup_epochs is not None:
        steps = round(cfg.warmup_epochs * steps_per_epoch)
    else:
        steps = 0
    return min(steps, total_steps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
