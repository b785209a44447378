"""The training config (`sharenas train`, and the recipe every search trains its models with), loaded
with `trainer.typed_config.load_config`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from trainer.data import DataConfig
from trainer.typed_config import ConfigError

NoDecay = Literal["bias", "norm", "embedding", "logit_scale"]


@dataclass
class ModelConfig:
    """Which model to train: a policy (preset name or path to a policy JSON) at a size."""

    policy: str = "msclip"
    """A preset name (`sharenas presets`) or the path of a policy JSON or an `arch.json`."""
    size: str = "tiny"
    """The model size: b32, b16, small or tiny."""

    def __post_init__(self) -> None:
        from search_spaces import SIZES

        if self.size not in SIZES:
            raise ConfigError(f"model.size: unknown size {self.size!r}; choose one of {', '.join(SIZES)}")


@dataclass
class OptimConfig:
    """AdamW with per-group weight decay, linear warm-up then cosine decay (paper recipe by default),
    or warm-up, a constant rate and a final cool-down (`schedule: wsd`)."""

    lr: float = 1.6e-3
    """Peak learning rate, reached at the end of the warm-up."""
    final_lr: float = 1.6e-4
    """Learning rate at the end of the cosine decay."""
    warmup_epochs: float | None = 5.0
    """Linear warm-up length in epochs; null when `warmup_steps` is set."""
    warmup_steps: int | None = None
    """Linear warm-up length in steps; null when `warmup_epochs` is set."""
    weight_decay_shared: float = 0.2
    """Weight decay of the parameters both towers share (the paper's 0.2)."""
    weight_decay_specific: float = 0.05
    """Weight decay of the modality-specific parameters (the paper's 0.05)."""
    no_decay: list[NoDecay] = field(default_factory=lambda: ["bias", "norm", "embedding", "logit_scale"])
    """Parameter kinds that get no weight decay."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas."""
    eps: float = 1e-6
    """AdamW epsilon."""
    grad_clip: float | None = 1.0
    """Max global gradient norm; null disables clipping."""
    max_logit_scale: float = math.log(100.0)
    """The learnable logit scale (log inverse temperature) is clamped to this, as CLIP does (ln 100)."""
    schedule: Literal["cosine", "wsd"] = "cosine"
    """`cosine`: decay from `lr` to `final_lr` over the whole run after the warm-up. `wsd`
    (warmup-stable-decay, Hägele et al. 2024): `lr` until the last `cooldown_fraction` of the run, then
    a (1 - sqrt) decay to `final_lr`. A WSD run of N epochs equals, step for step, a longer WSD run up to
    its cool-down, so one long run with short cool-down branches gives every shorter length."""
    cooldown_fraction: float = 0.2
    """The share of a `wsd` run spent cooling down (unused by `cosine`)."""
    implementation: Literal["auto", "fused", "foreach", "for-loop"] = "auto"
    """How AdamW updates the tensors: one fused kernel, one multi-tensor call (`foreach`) or a loop
    over them; `auto` is fused (same update, fewest kernels; `benchmarks/adamw_step.py` measures it)."""

    def __post_init__(self) -> None:
        if self.warmup_epochs is not None and self.warmup_steps is not None:
            raise ConfigError("set optim.warmup_epochs or optim.warmup_steps, not both (null the other)")
        if self.lr <= 0 or self.final_lr < 0:
            raise ConfigError(f"optim.lr must be > 0 and optim.final_lr >= 0, got {self.lr} and {self.final_lr}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"optim.grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.schedule not in ("cosine", "wsd"):
            raise ConfigError(f"optim.schedule: {self.schedule!r} is not one of cosine, wsd")
        if not 0.0 < self.cooldown_fraction <= 1.0:
            raise ConfigError(f"optim.cooldown_fraction must be in (0, 1], got {self.cooldown_fraction}")


@dataclass
class TrainSection:
    """Length, batch and runtime of the training run.

    `batch_size` is the global batch of one optimizer step, summed over processes and
    accumulation micro-batches; the contrastive loss always sees the whole global batch.
    """

    epochs: int | None = None
    """Training length in epochs; set exactly one of `epochs` and `steps`."""
    steps: int | None = None
    """Training length in optimizer steps; set exactly one of `epochs` and `steps`."""
    batch_size: int = 256
    """The global batch of one optimizer step (pairs, over all processes and micro-batches)."""
    accum_steps: int = 1
    """Micro-batches accumulated per optimizer step (the loss still sees the whole global batch)."""
    micro_batch: int | Literal["auto"] | None = None
    """Pairs one process computes at once: null -> batch_size / (processes x accum_steps); a number
    sets accum_steps; `auto` is the largest that fits the memory (`trainer.memory`), found before training."""
    memory_gb: float | None = None
    """Memory one process may use; null: its GPU's, or on CPU the machine's RAM. The step's estimate is
    checked against it before training (on CPU only when set or with micro_batch auto)."""
    seed: int = 0
    """Seed of the initialisation, the batch order and the augmentation."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: CUDA when available (the process's local rank under torchrun), else the CPU."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """`auto`: bf16 autocast on CUDA, fp32 on CPU."""
    grad_checkpointing: bool = False
    """Activation checkpointing: keep only each block's input and recompute the block in the backward
    pass (about a third more compute, most of the activation memory saved; `trainer.memory`)."""
    compile: bool = False
    """`torch.compile` the model (`trainer.acceleration`); off until its effect is measured on a GPU."""
    num_workers: int = 0
    """DataLoader worker processes (0 loads in the training process; a resumed run is bit-identical on CPU then)."""
    num_threads: int | None = None
    """torch CPU threads per process; null leaves torch's default."""
    log_every: int = 10
    """Steps between training-loss lines in metrics.jsonl."""
    checkpoint_every: int | None = 500
    """Steps between checkpoints (one is also written at the end); null: only at the end."""
    checkpoint_steps: list[int] = field(default_factory=list)
    """Steps at which a checkpoint is also written (e.g. where shorter `wsd` runs branch off this one)."""
    checkpoint_on_eval: bool = False
    """Also write a checkpoint at every evaluation (a scheduler that reports evaluations resumes there)."""
    keep_checkpoints: int = 1
    """How many of the latest checkpoints are kept."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ConfigError("set exactly one of train.epochs and train.steps (null the other)")
        for name in ("epochs", "steps", "batch_size", "accum_steps", "log_every", "checkpoint_every", "keep_checkpoints", "num_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {value}")
        if any(s < 1 for s in self.checkpoint_steps):
            raise ConfigError(f"train.checkpoint_steps must be steps >= 1, got {self.checkpoint_steps}")
        if self.num_workers < 0:
            raise ConfigError(f"train.num_workers must be >= 0, got {self.num_workers}")
        if self.micro_batch is not None and self.accum_steps != 1:
            raise ConfigError("set train.micro_batch or train.accum_steps, not both (the micro-batch decides the accumulation)")
        if isinstance(self.micro_batch, int) and self.micro_batch < 1 or self.memory_gb is not None and self.memory_gb <= 0:
            raise ConfigError(f"train.micro_batch must be >= 1 or auto and train.memory_gb > 0, got {self.micro_batch} and {self.memory_gb}")


@dataclass
class EvalConfig:
    """When to evaluate (always at the end of training) and the options of `trainer.evaluation.evaluate`."""

    every_steps: int | None = None
    """Evaluate every this many steps; null: not by steps."""
    every_epochs: int | None = 1
    """Evaluate every this many epochs; null: not by epochs."""
    batch_size: int = 256
    """Batch of the evaluation's forward passes."""
    nmi_pairs: int = 32
    """Pairs for the layer-wise modality NMI; 0 skips it."""
    heldout_batch_size: int = 128
    """Batch of the held-out contrastive loss (`data.heldout_shapes`); the loss depends on it."""
    probe_C: float = 1.0
    """Inverse regularisation strength of the linear probe's logistic regression."""

    def __post_init__(self) -> None:
        if self.nmi_pairs < 0:
            raise ConfigError(f"eval.nmi_pairs must be >= 0 (0 skips NMI), got {self.nmi_pairs}")
        for name in ("every_steps", "every_epochs", "batch_size", "heldout_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"eval.{name} must be >= 1 or null, got {value}")


@dataclass
class TrainConfig:
    """Everything a training run needs; written resolved to RUN_DIR/config.yaml."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy and size to train."""
    data: DataConfig = field(default_factory=DataConfig)
    """Where the pairs come from and how they are split."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and the learning-rate schedule."""
    train: TrainSection = field(default_factory=lambda: TrainSection(epochs=1))
    """Length, batch and runtime."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """When and how to evaluate."""
