"""FLOPs, speed, model FLOP utilization (MFU) and memory of one training step of sharenas policies.

A step is the trainer's: forward under the run's precision, the contrastive loss, backward, and a
fused AdamW update. Its FLOPs are counted once per policy with torch's `FlopCounterMode` (forward
and backward matrix products, convolutions and attention; no recomputation, the optimizer's
elementwise work left out, as MFU is usually stated). The policies are timed alternately in one
process so machine noise hits them alike. Prints per policy the GFLOP per step, the median step
time, the achieved TFLOP/s and, on a GPU whose bf16 peak is known (or `--peak-tflops`), the MFU;
on CUDA also the measured peak memory beside `trainer.memory`'s estimate; then
`step ratio FIRST / SECOND` for the first two policies.

    python benchmarks/step_flops.py                                   # CPU, tiny, batch 16, fp32
    python benchmarks/step_flops.py --size b32 --batch 256 --device cuda --precision bf16
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
"""Dense bf16 tensor-core peaks from the vendor's data sheets, matched against the device name in this order."""


def peak_tflops(device: torch.device, precision: str, given: float | None) -> float | None:
    if given is not None:
        return given
    if device.type != "cuda" or precision != "bf16":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["msclip", "clip-t768"])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per policy")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, if not in the built-in table")
    args = parser.parse_args()

    from torch.utils.flop_counter import FlopCounterMode

    from search_spaces import build_model
    from trainer.acceleration import enable_tf32
    from trainer.config import OptimConfig, TrainSection
    from trainer.loss import contrastive_loss
    from trainer.memory import step_memory
    from trainer.optim import build_optimizer

    device = torch.device(args.device)
    enable_tf32(device)
    bf16 = args.precision == "bf16"
    torch.manual_seed(0)
    models = {policy: build_model(policy, args.size).to(device).train() for policy in args.policies}
    optimizers = {policy: build_optimizer(model, OptimConfig()) for policy, model in models.items()}
    size = next(iter(models.values())).size
    images = torch.randn(args.batch, 3, size.image_size, size.image_size, device=device)
    tokens = torch.randint(1, 49406, (args.batch, size.context_length), device=device)
    tokens[:, -1] = 49407

    def forward_backward(model: torch.nn.Module) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            image, text, scale = model(images, tokens)
        contrastive_loss(image.float(), text.float(), scale.float()).backward()

    def step(policy: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        forward_backward(models[policy])
        optimizers[policy].step()
        optimizers[policy].zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    flops = {}
    for policy, model in models.items():
        counter = FlopCounterMode(display=False)
        with counter:
            forward_backward(model)
        model.zero_grad(set_to_none=True)
        flops[policy] = counter.get_total_flops()
    times: dict[str, list[float]] = {policy: [] for policy in models}
    peaks: dict[str, int] = {}
    for i in range(args.warmup + args.steps):
        for policy in models:
            if device.type == "cuda" and i == args.warmup:
                torch.cuda.reset_peak_memory_stats(device)
            elapsed = step(policy)
            if i >= args.warmup:
                times[policy].append(elapsed)
            if device.type == "cuda" and i == args.warmup:
                peaks[policy] = torch.cuda.max_memory_allocated(device)

    peak = peak_tflops(device, args.precision, args.peak_tflops)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device={name} size={args.size} batch={args.batch} precision={args.precision} steps={args.steps} "
          f"peak={'%.1f TFLOP/s' % peak if peak else 'unknown'}")
    median = {policy: statistics.median(t) for policy, t in times.items()}
    for policy, model in models.items():
        achieved = flops[policy] / median[policy] / 1e12
        mfu = f"MFU {achieved / peak:.1%}" if peak else "MFU n/a (no peak for this device)"
        estimate = step_memory(model, TrainSection(steps=1, batch_size=args.batch, precision=args.precision), 1).at(args.batch)
        measured = f"{peaks[policy] / 1e9:.3g} GB measured peak" if policy in peaks else "peak not measured on CPU"
        print(f"{policy}: {flops[policy] / 1e9:.1f} GFLOP/step, {median[policy] * 1000:.1f} ms/step, {achieved:.3g} TFLOP/s, {mfu}, "
              f"memory {estimate / 1e9:.3g} GB estimated, {measured}")
    if len(models) > 1:
        first, second = args.policies[:2]
        print(f"step ratio {first} / {second} = {median[first] / median[second]:.3f}")


if __name__ == "__main__":
    main()
