"""AdamW as a per-parameter loop, as one multi-tensor (`foreach`) call, or as one fused kernel, in a
training step of the tiny model on CPU (one process, one thread).

The same model, batch and gradients for each implementation, timed alternately in one process
(process CPU time, which other jobs on a shared machine do not inflate). Prints the median time of
the optimizer step and of the whole step per implementation, the optimizer's share of the step, and
`ratio = for-loop step / IMPL step` (> 1.0: IMPL makes the step faster).

    python benchmarks/adamw_step.py                       # tiny msclip, batch 64, CPU
    python benchmarks/adamw_step.py --size small --batch 32
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

IMPLEMENTATIONS = ("for-loop", "foreach", "fused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="msclip")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--batch", type=int, default=64, help="the ShareBench-tiny recipe's batch")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from search_spaces import build_model
    from trainer.config import OptimConfig
    from trainer.loss import contrastive_loss
    from trainer.optim import build_optimizer

    torch.manual_seed(0)
    model = build_model(args.policy, args.size)
    size = model.size
    images = torch.randn(args.batch, 3, size.image_size, size.image_size)
    tokens = torch.randint(1, 49000, (args.batch, size.context_length))
    tokens[:, -1] = 49407
    optimizers = {impl: build_optimizer(model, OptimConfig(implementation=impl)) for impl in IMPLEMENTATIONS}
    step_times: dict[str, list[float]] = {impl: [] for impl in IMPLEMENTATIONS}
    optim_times: dict[str, list[float]] = {impl: [] for impl in IMPLEMENTATIONS}
    for step in range(args.warmup + args.steps):
        for impl, optimizer in optimizers.items():
            start = time.process_time()
            loss = contrastive_loss(*model(images, tokens))
            loss.backward()
            middle = time.process_time()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            end = time.process_time()
            if step >= args.warmup:
                step_times[impl].append(end - start)
                optim_times[impl].append(end - middle)

    step_med = {impl: statistics.median(t) for impl, t in step_times.items()}
    optim_med = {impl: statistics.median(t) for impl, t in optim_times.items()}
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.policy} {args.size} ({params / 1e6:.2f}M parameters in {len(list(model.parameters()))} tensors), batch {args.batch}, "
          f"CPU, 1 thread, median of {args.steps} steps (process CPU time)")
    for impl in IMPLEMENTATIONS:
        print(f"{impl:>8}: optimizer {optim_med[impl] * 1000:7.2f} ms ({optim_med[impl] / step_med[impl]:5.1%} of the step), "
              f"step {step_med[impl] * 1000:7.1f} ms, ratio for-loop/{impl} = {step_med['for-loop'] / step_med[impl]:.3f}")


if __name__ == "__main__":
    main()
