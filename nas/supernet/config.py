"""Typed configuration of `sharenas search gumbel` (YAML via `trainer.typed_config.load_config`).

Sections `data`, `optim`, `train` and `eval` are the trainer's own: the supernet's weights train
with the same recipe as a standalone model, and `--retrain` trains the winner with exactly these
sections, so the search and the retrain are runs of the same length.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from search_spaces import GateSpaceConfig, get_size
from trainer.config import EvalConfig, OptimConfig, TrainSection
from trainer.data import DataConfig
from trainer.typed_config import ConfigError, parse_budget



@dataclass
class SupernetSection(GateSpaceConfig):
    """The supernet: its gate space (model size, the optional gates beside the (layer, sublayer)
    gates) and its weight layout."""

    entangle: bool = False
    """Weight entanglement: a specific module is the shared one plus a zero-initialised per-modality
    delta; derivation and export fold them into plain standalone weights."""

    def __post_init__(self) -> None:
        try:
            get_size(self.size)
        except ValueError as exc:
            raise ConfigError(f"space.size: {exc}") from None


@dataclass
class SearchSection:
    """The architecture phase: how the weights and the gate logits are trained.

    Gate logits use Adam with decoupled weight decay (an L2 term inside Adam would dominate once the
    low temperature starves the logits of gradient, and drag every gate back to undecided), on batches
    of the held-out architecture split (`data.arch_fraction`); their loss is its contrastive loss plus
    the budget term.
    """

    mode: Literal["joint", "decoupled"] = "joint"
    """`joint`: gate logits and weights are trained alternately (first-order bi-level); `decoupled`:
    only the weights are trained (single-path sampling, SPOS / FairNAS) and the policy is chosen
    afterwards by `derive.method: evolution` over the inherited weights."""
    warmup_epochs: float = 1.0
    """Weight-only training with uniformly sampled paths before any gate update."""
    fairness: Literal["strict", "none"] = "strict"
    """`strict`: every weight step trains both options of every gate, on the two halves of the batch
    (complementary random paths), so no option is trained more because it leads; `none`: after the
    warm-up, weight steps run the path sampled from the gates (GDAS)."""
    sandwich: bool = False
    """Every weight step also trains the all-shared and the all-specific path (BigNAS's sandwich rule)."""
    path_batch: Literal["split", "full"] = "split"
    """`split`: the step's paths share the batch (one chunk each); `full`: each path runs the whole
    batch (more negatives per path, cost times the number of paths)."""
    path_every: int = 1
    """The sampled weight paths are held for this many steps before switching."""
    ln_gates: Literal["hard", "soft"] = "hard"
    """`soft`: LayerNorm gates are not sampled but run both options mixed by the gate's probabilities
    (their logits get a gradient every gate step); attention / FFN gates stay hard."""
    few_shot_gate: str | None = None
    """Few-shot NAS (Zhao et al. 2021): after `few_shot_epochs`, the supernet is split on this gate
    (e.g. `es`) into two children, each with the gate fixed to one option, that continue the schedule
    from the parent's weights one after the other (cost: the remaining epochs twice); a policy is scored
    with the child holding its option. null: no split."""
    few_shot_epochs: float = 2.0
    """Epochs of the parent supernet before the few-shot split."""
    arch_lr: float = 3e-3
    """Learning rate of the gate logits' Adam."""
    arch_betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas of the gate logits."""
    arch_weight_decay: float = 1e-3
    """Decoupled weight decay of the gate logits."""
    arch_every: int = 1
    """One gate step every this many weight steps."""
    arch_batch_size: int | None = None
    """Pairs of the architecture split per gate step; null: `train.batch_size`."""
    tau_start: float = 10.0
    """Gumbel-softmax temperature at the start of the architecture phase."""
    tau_end: float = 0.1
    """Temperature at its end (0 < tau_end <= tau_start)."""
    tau_schedule: Literal["linear", "exponential"] = "linear"
    """How the temperature goes from `tau_start` to `tau_end`."""
    budget: str | int | None = None
    """A parameter count ("130M", "3.9M", an integer) that the expected parameter count is held to;
    null: no budget."""
    budget_mode: Literal["penalty", "lagrange"] = "lagrange"
    """`penalty`: a hinge term, `budget_weight` x the excess; `lagrange`: a multiplier raised by dual
    ascent with step `budget_weight`. The excess is measured in units of the space's parameter span."""
    budget_weight: float = 1.0
    """The penalty's weight, or the multiplier's step."""
    diagnostics_batch: int = 64
    """Pairs for the per-epoch modality-gradient cosines (0 turns them off)."""

    def __post_init__(self) -> None:
        if self.warmup_epochs < 0:
            raise ConfigError(f"search.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 < self.tau_end <= self.tau_start:
            raise ConfigError(f"search.tau_start ({self.tau_start}) and tau_end ({self.tau_end}) need 0 < tau_end <= tau_start")
        if self.arch_lr <= 0 or self.budget_weight < 0:
            raise ConfigError("search.arch_lr must be > 0 and search.budget_weight >= 0")
        if self.few_shot_epochs < 0:
            raise ConfigError(f"search.few_shot_epochs must be >= 0, got {self.few_shot_epochs}")
        if self.path_every < 1:
            raise ConfigError(f"search.path_every must be >= 1, got {self.path_every}")
        if self.arch_every < 1 or (self.arch_batch_size is not None and self.arch_batch_size < 2):
            raise ConfigError("search.arch_every must be >= 1 and search.arch_batch_size >= 2 (or null: the training batch)")
        if self.diagnostics_batch < 0:
            raise ConfigError(f"search.diagnostics_batch must be >= 0 (0 turns the gradient cosines off), got {self.diagnostics_batch}")
        parse_budget(self.budget, "search.budget")

    @property
    def budget_params(self) -> int | None:
        return parse_budget(self.budget, "search.budget")


@dataclass
class DeriveSection:
    """Turning the final gates into one policy.

    The argmax policy and `samples` policies drawn from the final gate distribution are scored with
    the supernet's inherited weights; policies with early specialization or fusion first re-estimate
    their BatchNorm statistics. Over a budget, only policies within it can win.
    """

    method: Literal["gates", "evolution"] = "gates"
    """`gates`: the argmax and the sampled policies; `evolution` (required by `search.mode: decoupled`):
    an evolutionary search over the inherited weights, within the budget, starting from the gates'
    argmax and random policies (the best half is kept, the rest replaced by mutants and crossovers)."""
    finetune_steps: int = 0
    """> 0: each candidate is scored after that many AdamW steps at constant `finetune_lr` on its
    inherited weights, standalone (cost: that many training steps per candidate)."""
    finetune_lr: float = 2.0e-4
    """Learning rate of those fine-tuning steps."""
    population: int = 16
    """Evolution: policies per generation."""
    generations: int = 6
    """Evolution: rounds."""
    mutation: float = 0.05
    """Evolution: the probability that a mutant flips each gate."""
    samples: int = 8
    """Policies drawn from the final gate distribution and scored beside the argmax."""
    metric: Literal["val_loss", "zeroshot"] = "val_loss"
    """`val_loss`: contrastive loss on the architecture split (lower is better); `zeroshot`: mean
    top-1 of the zero-shot tasks (also evaluation sets, so the winner's reported zero-shot is optimistic)."""
    batch_size: int = 128
    """Pairs per batch when scoring and recalibrating candidates."""
    bn_recalibration_batches: int = 4
    """Training batches that re-estimate the BatchNorm statistics of a policy with early
    specialization or fusion before it is scored."""
    retrain: bool = False
    """After deriving, train the winner standalone with this config's `data`, `optim`, `train` and
    `eval` sections (as `search gumbel --retrain` does)."""
    seed: int = 0
    """Seed of the sampled candidates and of the evolution."""
    wait_hours: float = 24.0
    """Under torchrun, how long the other processes wait for process 0 to derive (a dead process 0
    ends them at once; this bounds only a hung one)."""

    def __post_init__(self) -> None:
        if self.wait_hours <= 0:
            raise ConfigError(f"derive.wait_hours must be > 0, got {self.wait_hours}")
        if self.samples < 0 or self.batch_size < 2 or self.bn_recalibration_batches < 0:
            raise ConfigError("derive.samples and derive.bn_recalibration_batches must be >= 0, derive.batch_size >= 2")
        if self.finetune_steps < 0 or self.finetune_lr <= 0:
            raise ConfigError("derive.finetune_steps must be >= 0 and derive.finetune_lr > 0")
        if self.population < 4 or self.generations < 0 or not 0 < self.mutation < 1:
            raise ConfigError("derive.population must be >= 4, derive.generations >= 0 and 0 < derive.mutation < 1")


@dataclass
class GumbelConfig:
    """Everything `sharenas search gumbel` needs; written resolved to OUT/config.yaml."""

    space: SupernetSection = field(default_factory=SupernetSection)
    """The gate space and the supernet's weight layout."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data, as for training; `data.arch_fraction` is the split the gates train on."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The weights' optimizer, as for training."""
    train: TrainSection = field(default_factory=lambda: TrainSection(epochs=6, batch_size=128))
    """Length and batch of the search, as for training (no accumulation)."""
    search: SearchSection = field(default_factory=SearchSection)
    """The architecture phase."""
    derive: DeriveSection = field(default_factory=DeriveSection)
    """Choosing the policy from the final gates."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation during the search and of a retrained winner."""

    def __post_init__(self) -> None:
        if self.train.accum_steps != 1 or self.train.micro_batch is not None:
            raise ConfigError("the Gumbel search does not accumulate: leave train.accum_steps at 1 and train.micro_batch null, "
                              "and lower train.batch_size instead")
        if self.train.compile:
            raise ConfigError("train.compile: the Gumbel search runs a new sampled path every step, which torch.compile would "
                              "recompile each time; set train.compile=false")
        if self.data.arch_fraction <= 0:
            raise ConfigError("data.arch_fraction is 0: the search updates its gates on a held-out split; set it to e.g. 0.1")
        if self.search.fairness == "strict" and self.train.batch_size < 4:
            raise ConfigError("search.fairness: strict splits each batch in two; use train.batch_size >= 4")
        if self.search.few_shot_gate is not None and self.derive.method != "gates":
            raise ConfigError("search.few_shot_gate derives from each child's gates; use derive.method: gates")
        if self.search.mode == "decoupled" and self.derive.method != "evolution":
            raise ConfigError("search.mode: decoupled trains no gates; set derive.method: evolution to choose the policy")
