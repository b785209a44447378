"""Cost of the Gumbel supernet against the standalone model it derives.

1. Step time: one supernet weight step (the search's: two complementary random paths on the two
   halves of the batch under `fairness: strict`, one sampled path otherwise) vs one training step of
   the standalone model of `--policy`, same size, batch, optimizer and precision, timed alternately
   in one process so machine noise hits both alike. Also the architecture step (a hard Gumbel sample
   with straight-through weights, gradient to the logits only). Prints medians and
   `step ratio = supernet / standalone` (the goal is <= 1.15).
2. With `--search CONFIG.yaml`: the whole search (`search gumbel`, derive included) and one
   standalone training of the same length (the config's data/optim/train/eval sections, policy
   `--policy` or the search's own derived one), run one after the other in this process; prints
   `search ratio = search wall time / standalone wall time` (the goal is <= 2).

On a CPU the step timer is this process's CPU time by default (`--clock`), which other jobs on a
shared machine do not inflate; the search ratio always uses wall time.

    python benchmarks/supernet_overhead.py                          # tiny, batch 128, CPU
    python benchmarks/supernet_overhead.py --search experiments/tiny/gumbel.yaml --set train.epochs=2
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


CLOCK = time.perf_counter


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = CLOCK()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return CLOCK() - start


def step_times(args: argparse.Namespace) -> None:
    from search_spaces import build_model, get_size
    from trainer.config import OptimConfig
    from trainer.step import TrainingStep, autocast_context, forward_loss
    from trainer.optim import build_optimizer

    from nas.supernet.gates import GateSample, gate_generator, sample_hard, uniform_choices
    from nas.supernet.model import Supernet
    from search_spaces.gate_space import GateSpace
    from search_spaces.presets import paper_fusion_layers

    device, size = torch.device(args.device), get_size(args.size)
    autocast = lambda: autocast_context(device, args.precision)
    torch.manual_seed(0)
    space = GateSpace(size, early_specialization=True, fusion_layers=paper_fusion_layers(size.layers))
    supernet = Supernet(space).to(device)
    standalone = build_model(args.policy, size).to(device)
    logits = torch.nn.Parameter(torch.zeros(space.num_gates, 2, device=device))
    optim = OptimConfig(lr=1e-4)
    step_super = TrainingStep(supernet, build_optimizer(supernet, optim), optim, lambda _: optim.lr, autocast)
    step_alone = TrainingStep(standalone, build_optimizer(standalone, optim), optim, lambda _: optim.lr, autocast)
    images = torch.randn(args.batch, 3, size.image_size, size.image_size, device=device)
    tokens = torch.randint(1, 49000, (args.batch, size.context_length), device=device)
    tokens[:, size.context_length // 2] = 49407

    def train_step(step: TrainingStep, parts) -> None:
        for route, im, tk in zip(parts, images.chunk(len(parts)), tokens.chunk(len(parts))):
            if route is not None:
                step.module.route(GateSample(route))
            step.backward(step.module, (im, tk), 0, parts=len(parts))
        step.update(0, [p for p in step.module.parameters() if p.grad is not None])

    def supernet_step(step: int) -> None:
        choices = uniform_choices(space.num_gates, gate_generator(0, step, 0))
        train_step(step_super, [choices, [1 - c for c in choices]] if args.fairness == "strict" else [choices])

    def arch_step(step: int) -> None:
        supernet.route(sample_hard(logits, 1.0, gate_generator(0, step, 1)))
        torch.autograd.grad(forward_loss(supernet, (images, tokens), autocast), [logits])

    times: dict[str, list[float]] = {"supernet": [], "standalone": [], "arch": []}
    for step in range(args.warmup + args.steps):
        measured = {
            "supernet": timed(lambda: supernet_step(step), device),
            "standalone": timed(lambda: train_step(step_alone, [None]), device),
            "arch": timed(lambda: arch_step(step), device),
        }
        if step >= args.warmup:
            for key, value in measured.items():
                times[key].append(value)
    med = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"size {size.name}, batch {args.batch}, {args.precision}, {device}, fairness {args.fairness}, "
        f"standalone {getattr(args.policy, 'name', args.policy)}, "
        f"{args.steps} timed steps each (alternating), clock {'process CPU' if CLOCK is time.process_time else 'wall'}"
    )
    print(f"supernet weight step {med['supernet'] * 1e3:.1f} ms | standalone step {med['standalone'] * 1e3:.1f} ms | arch step {med['arch'] * 1e3:.1f} ms")
    print(f"step ratio (supernet / standalone): {med['supernet'] / med['standalone']:.3f}")
    print(f"arch step / standalone step: {med['arch'] / med['standalone']:.3f}")


def search_ratio(args: argparse.Namespace) -> "SharingPolicy | str":
    """Time the search and one standalone training; return the standalone policy (for the step timing)."""
    from search_spaces import SharingPolicy
    from trainer.config import ModelConfig, TrainConfig
    from trainer.loop import train
    from trainer.typed_config import load_config

    from nas.supernet.config import GumbelConfig
    from nas.supernet.search import run_gumbel_search

    cfg = load_config(args.search, GumbelConfig, args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        run_gumbel_search(cfg, Path(tmp) / "search", retrain=False)
        search = (time.perf_counter() - wall, time.process_time() - cpu)
        policy = str(Path(tmp) / "search" / "policy.json") if args.policy == "derived" else args.policy
        resolved = SharingPolicy.load(policy) if policy.endswith(".json") else policy
        standalone_cfg = TrainConfig(
            model=ModelConfig(policy=policy, size=cfg.space.size), data=cfg.data, optim=cfg.optim, train=cfg.train, eval=cfg.eval
        )
        wall, cpu = time.perf_counter(), time.process_time()
        train(standalone_cfg, Path(tmp) / "standalone")
        standalone = (time.perf_counter() - wall, time.process_time() - cpu)
    label = "derived policy" if args.policy == "derived" else policy
    print(f"search (weights + gates + diagnostics + derive): {search[0]:.1f} s wall, {search[1]:.1f} s CPU")
    print(f"standalone training of the same length ({label}, final evaluation included): {standalone[0]:.1f} s wall, {standalone[1]:.1f} s CPU")
    print(f"search ratio (search / standalone): {search[0] / standalone[0]:.3f} wall, {search[1] / standalone[1]:.3f} CPU")
    return resolved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto")
    parser.add_argument("--policy", default=None, help="standalone policy: preset or .json (default msclip; with --search: the derived one)")
    parser.add_argument("--fairness", choices=["strict", "none"], default="strict")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--clock", choices=["auto", "wall", "process"], default="auto",
        help="step timer: process CPU time (robust to other jobs on a shared CPU machine) or wall time; auto: process on CPU, wall on CUDA",
    )
    parser.add_argument("--search", default=None, help="also time a whole search with this Gumbel config against one standalone training")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a value of the --search config")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    global CLOCK
    use_process = args.clock == "process" or (args.clock == "auto" and torch.device(args.device).type == "cpu")
    CLOCK = time.process_time if use_process else time.perf_counter
    if args.search is not None:
        args.policy = args.policy or "derived"
        args.policy = search_ratio(args)
    args.policy = args.policy or "msclip"
    step_times(args)


if __name__ == "__main__":
    main()
