"""Forward+backward step time of sharenas' `clip` preset vs open_clip's ViT-B-32.

Both models hold the same weights (ours is imported from open_clip's), see the same batch, dtype and
device, and are timed alternately in one process so machine noise hits both alike. Prints the median
step times and `ratio = open_clip / sharenas` (>= 1.0: sharenas is at least as fast).

    python benchmarks/step_vs_open_clip.py                         # CPU, batch 8, fp32
    python benchmarks/step_vs_open_clip.py --device cuda --batch 256 --dtype bf16
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F


def contrastive_step(model: torch.nn.Module, images: torch.Tensor, text: torch.Tensor, autocast) -> None:
    with autocast():
        image_features, text_features, scale = model(images, text)
        logits = scale * image_features @ text_features.T
        labels = torch.arange(images.shape[0], device=images.device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    loss.backward()
    model.zero_grad(set_to_none=True)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="default 8 on CPU, 256 on GPU")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default=None, help="default fp32 on CPU, bf16 on GPU")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    import open_clip

    from search_spaces import from_open_clip

    logging.getLogger().setLevel(logging.ERROR)
    device = torch.device(args.device)
    batch = args.batch or (256 if device.type == "cuda" else 8)
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if dtype == "bf16" else nullcontext

    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32", pretrained=None).to(device).train()
    ours = from_open_clip(reference.state_dict()).to(device).train()
    images = torch.randn(batch, 3, 224, 224, device=device)
    text = torch.randint(1, 49406, (batch, 77), device=device)
    text[:, -1] = 49407  # end-of-text token, pooled by argmax

    models = {"open_clip": reference, "sharenas": ours}
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(args.warmup + args.steps):
        for name, model in models.items():
            elapsed = timed(lambda: contrastive_step(model, images, text, autocast), device)
            if step >= args.warmup:
                times[name].append(elapsed)

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"device={device} batch={batch} dtype={dtype} steps={args.steps} threads={torch.get_num_threads()}")
    for name, t in med.items():
        print(f"{name:>9}: {t * 1000:9.1f} ms/step (median of {args.steps})")
    print(f"ratio open_clip/sharenas = {med['open_clip'] / med['sharenas']:.3f}")


if __name__ == "__main__":
    main()
