"""Training samples/s of a recipe on one thread (the trainer itself: data path, forward, backward,
clipping, AdamW), for variants of the step that learn the same thing, against today's step in one run.

Each variant first trains `--short` steps unmeasured (so `compile` finds its kernels in inductor's cache
from then on), then twice per repeat, for `--short` and for `--long` steps, in this process (process
CPU time, which other jobs on a shared machine do not inflate); the per-step cost is the difference
over `--long - --short` steps, so model and data set-up, the cached compilation and the final
evaluation cancel. Variants alternate within each repeat. Prints the median samples/s per variant and
`ratio = variant samples/s / today's` (> 1: faster).

Variants (`--variants`, comma-separated):
- `today`: the recipe as it is;
- `compile`: `train.compile: true` (`torch.compile` of the model, inductor on CPU);
- `math-attention`: attention through PyTorch's math kernel instead of the fused CPU kernel;
- `uncached`: every image decoded and every caption tokenized on each access, as before the data path
  kept them (`trainer.data.csv_source.DECODED_CACHE_BYTES`, `trainer.data.text`). The caches pay from a
  run's second epoch on, so compare it with `--short` and `--long` past the first epoch (the real set
  has 85 steps per epoch: `--short 90 --long 130`).

    python benchmarks/train_step.py                                   # the real-set recipe (needs data/real)
    python benchmarks/train_step.py --recipe experiments/tiny/msclip.yaml --variants today,compile
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import torch

VARIANTS = ("today", "compile", "math-attention", "uncached")


@contextlib.contextmanager
def uncached() -> Iterator[None]:
    """The data path without its decoded-image and token caches."""
    from trainer.data import csv_source
    from trainer.data.text import _tokenizer

    def tokenize(text: str, context_length: int) -> torch.Tensor:
        return _tokenizer(context_length)([text], context_length=context_length)

    with mock.patch.object(csv_source, "DECODED_CACHE_BYTES", 0), mock.patch.object(csv_source, "tokenize", tokenize):
        yield


def variant_context(variant: str) -> contextlib.AbstractContextManager:
    if variant == "math-attention":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)
    if variant == "uncached":
        return uncached()
    return contextlib.nullcontext()


def cpu_seconds(recipe: str, variant: str, steps: int, policy: str, out: Path) -> float:
    """Process CPU seconds of training `recipe` for `steps` steps with `variant`."""
    from trainer.config import TrainConfig
    from trainer.loop import train
    from trainer.typed_config import load_config

    overrides = [f"train.steps={steps}", "train.epochs=null", "train.num_threads=1", "train.progress=false", "train.checkpoint_every=null",
                 "eval.every_epochs=null", "eval.nmi_pairs=0", f"model.policy={policy}", f"train.compile={variant == 'compile'}"]
    cfg = load_config(recipe, TrainConfig, overrides)
    with variant_context(variant):
        start = time.process_time()
        train(cfg, out)
        return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="experiments/real/msclip.yaml")
    parser.add_argument("--policy", default="msclip")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--short", type=int, default=5, help="steps of the run whose cost is subtracted")
    parser.add_argument("--long", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "today" not in variants:
        parser.error(f"--variants: give 'today' and any of {', '.join(VARIANTS)} (unknown: {', '.join(unknown) or 'none'})")
    torch.set_num_threads(1)
    from trainer.config import TrainConfig
    from trainer.typed_config import load_config

    batch = load_config(args.recipe, TrainConfig).train.batch_size
    rates: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            cpu_seconds(args.recipe, variant, args.short, args.policy, Path(tmp) / f"{variant}-warm-up")
        for repeat in range(args.repeats):
            for variant in variants:
                short = cpu_seconds(args.recipe, variant, args.short, args.policy, Path(tmp) / f"{variant}-{repeat}-short")
                long = cpu_seconds(args.recipe, variant, args.long, args.policy, Path(tmp) / f"{variant}-{repeat}-long")
                rates[variant].append((args.long - args.short) * batch / max(long - short, 1e-9))
                print(f"repeat {repeat} {variant}: {rates[variant][-1]:.1f} samples/s", flush=True)
    today = statistics.median(rates["today"])
    print(f"\n{args.recipe}, {args.policy}, batch {batch}, one thread, process CPU time, {args.long - args.short} steps x {args.repeats}")
    print(f"{'variant':<16}{'samples/s':>10}{'ratio':>8}")
    for variant in variants:
        rate = statistics.median(rates[variant])
        print(f"{variant:<16}{rate:>10.1f}{rate / today:>8.2f}")


if __name__ == "__main__":
    main()
