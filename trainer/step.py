"""One optimizer step of contrastive training, the only one: the trainer (`trainer.loop`), the Gumbel
search's weight steps (`nas.supernet.search`) and the fine-tune before scoring
(`nas.supernet.finetune`) all take their steps through `TrainingStep`.

A step is one or more backward passes, then one update:
- `backward`: a forward under the step's autocast, the contrastive loss in fp32 over the batch gathered
  from every process, the loss checked for NaN/inf, backward. A caller with several parts per step (the
  supernet's paths) calls it once per part with `parts` set, so the gradients sum to the mean loss's;
- `backward_accumulated`: the same objective over micro-batches whose features are first computed
  without gradients (see `trainer.loop` on `train.accum_steps`);
- `update`: gradient clipping (its norm checked), the learning rate of this step, the optimizer step,
  gradients cleared, the logit scale clamped to `optim.max_logit_scale`.
What differs between the callers comes in as arguments: the model a batch goes through (DDP-wrapped,
or the supernet routed to a path), the parameters that got gradients, the learning-rate rule, the
precision and what a non-finite value raises. Anything between backward and update (the supernet
averages its gradients over processes) the caller does between the two calls.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import torch
from torch import nn

from trainer.config import OptimConfig
from trainer.distributed import World, mean_over_ranks
from trainer.loss import SINGLE, contrastive_loss
from trainer.optim import set_lr

Batch = tuple[torch.Tensor, torch.Tensor]
"""(images, tokens) already on the step's device."""

Autocast = Callable[[], contextlib.AbstractContextManager]


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for `bf16` (and `auto` on CUDA); nothing for fp32."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class NonFinite(Protocol):
    def __call__(self, value: float, what: str, step: int) -> None:
        """Raise for a non-finite `value` of `what` ("loss" or "gradient norm") at `step`."""


def forward_loss(model: nn.Module, batch: Batch, autocast: Autocast, world: World = SINGLE) -> torch.Tensor:
    """The contrastive loss of `batch` through `model`: the forward under `autocast`, the loss in fp32 over
    the batch gathered from every process."""
    with autocast():
        image, text, scale = model(*batch)
    return contrastive_loss(image.float(), text.float(), scale.float(), world)


class TrainingStep:
    """The step of one model (`module`, the unwrapped one whose parameters and logit scale it updates)."""

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        optim: OptimConfig,
        lr_at: Callable[[int], float],
        autocast: Autocast = contextlib.nullcontext,
        world: World = SINGLE,
        non_finite: NonFinite | None = None,
    ) -> None:
        self.module, self.optimizer, self.optim, self.lr_at = module, optimizer, optim, lr_at
        self.autocast, self.world, self.non_finite = autocast, world, non_finite

    def _check(self, value: float, what: str, step: int) -> None:
        if self.non_finite is not None and not math.isfinite(value):
            self.non_finite(value, what, step)

    def backward(self, model: nn.Module, batch: Batch, step: int, parts: int = 1) -> float:
        """Forward `batch` through `model` and backpropagate its loss (divided by `parts`); returns the
        loss averaged over processes."""
        loss = forward_loss(model, batch, self.autocast, self.world)
        if parts != 1:
            loss = loss / parts
        value = mean_over_ranks(loss, self.world).item()
        self._check(value, "loss", step)
        loss.backward()
        return value

    def backward_accumulated(self, model: nn.Module, micro: Sequence[Batch], step: int) -> float:
        """The loss over all of `micro`'s pairs, one micro-batch with gradients at a time against the
        others' cached features (open_clip's accumulation); `model` may be DDP-wrapped, and only the
        last micro-batch synchronizes. Returns the loss of the first micro-step, averaged over processes."""
        with torch.no_grad(), self.autocast():
            cached = [self.module(i, t)[:2] for i, t in micro]
        cached = [(a.float(), b.float()) for a, b in cached]
        value = math.nan
        for j, (images, tokens) in enumerate(micro):
            last = j == len(micro) - 1
            sync = contextlib.nullcontext() if last or not self.world.distributed else model.no_sync()
            with sync:
                with self.autocast():
                    image, text, scale = model(images, tokens)
                # The logit scale takes its gradient once, in the micro-step DDP synchronizes.
                scale = scale.float() if last else scale.float().detach()
                all_image = torch.cat([c[0] for c in cached[:j]] + [image.float()] + [c[0] for c in cached[j + 1 :]])
                all_text = torch.cat([c[1] for c in cached[:j]] + [text.float()] + [c[1] for c in cached[j + 1 :]])
                loss = contrastive_loss(all_image, all_text, scale, self.world)
                if j == 0:
                    value = mean_over_ranks(loss, self.world).item()
                    self._check(value, "loss", step)
                loss.backward()
        return value

    def update(self, step: int, params: Iterable[torch.Tensor] | None = None) -> float | None:
        """Clip the gradients of `params` (default: all of the module's), set this step's learning rate,
        step the optimizer, clear the gradients and clamp the logit scale; returns the gradient norm
        before clipping (None without `optim.grad_clip`)."""
        grad_norm = None
        if self.optim.grad_clip is not None:
            params = self.module.parameters() if params is None else params
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.optim.grad_clip))
            self._check(grad_norm, "gradient norm", step)
        set_lr(self.optimizer, self.lr_at(step))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.module.logit_scale.clamp_(0.0, self.optim.max_logit_scale)
        return grad_norm
