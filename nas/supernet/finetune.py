"""A short fine-tune of a candidate's inherited weights before it is scored (as few-shot and
one-shot NAS papers do to reduce the supernet's ranking bias): a fixed number of AdamW steps at a
constant learning rate, the same batches for every candidate, so candidates stay comparable."""
from __future__ import annotations

import torch
from torch import nn

from search_spaces import SharingPolicy, build_model
from trainer.config import OptimConfig
from trainer.evaluation.precision import scoring_precision
from trainer.loss import contrastive_loss
from trainer.optim import build_optimizer, set_lr

from nas.scoring import Batches


def finetune_model(model: nn.Module, batches: Batches, lr: float, optim: OptimConfig, device: torch.device) -> nn.Module:
    """Train `model` in place for one step per batch of `batches` at constant `lr` (the recipe's weight
    decay groups and gradient clipping), at the scoring precision, since it is part of scoring;
    returns it in eval mode."""
    optimizer = build_optimizer(model, optim)
    set_lr(optimizer, lr)
    model.train()
    with scoring_precision(device):
        for images, tokens in batches:
            image, text, scale = model(images.to(device), tokens.to(device))
            loss = contrastive_loss(image.float(), text.float(), scale.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, optim.max_logit_scale)
    return model.eval()


def finetuned_standalone(
    supernet: nn.Module, policy: SharingPolicy, batches: Batches, lr: float, optim: OptimConfig, device: torch.device
) -> nn.Module:
    """`policy`'s standalone model with the supernet's inherited weights, fine-tuned on `batches`."""
    model = build_model(policy, supernet.space.size)
    model.load_state_dict(supernet.standalone_state_dict(policy))
    return finetune_model(model.to(device), batches, lr, optim, device)
