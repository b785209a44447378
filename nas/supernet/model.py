"""The Gumbel supernet: a `SharedCLIP` whose every (layer, sublayer) slot holds a shared and a
modality-specific module behind a gate, plus optional early-specialization and fusion gates.

It is built from the model family's own parts: `SharedBlock` with `GatedSlot`s in place of sharing
slots, the sublayers of `sublayer_factories`, `VisionTower` / `TextTower`, `ConvStem`,
`ParallelBranch` and `Adapter`; the towers' text path, encoders and `forward` are `SharedCLIP`'s.
Which path runs is set per step on its `Routing` (one choice per gate); **only the chosen module of
each gate runs**. When the routing carries straight-through weights, each chosen module's output is
multiplied by its weight (exactly 1.0) so the gate logits get gradients. Gates the routing marks
`soft` (the LayerNorm gates under `search.ln_gates: soft`) instead run both options and mix their
outputs with the gate's probabilities.

Weight entanglement (`space.entangle`, as AutoFormer's supernets): a slot's modality-specific module
is the shared module plus a zero-initialised per-modality delta (the `vision` / `text` modules hold
the deltas), so flipping a gate toggles a small residual instead of swapping in a separately trained
module, and every path trains the shared weights. `standalone_state_dict` folds shared + delta into
each tower's plain weights.

The gate logits are not part of the supernet (`parameters()` holds the weights only), so the
weights' optimizer, weight-decay groups, checkpoints and gradient synchronisation never see them.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from search_spaces import SUBLAYERS, LayerSharing, SharedCLIP, SharingPolicy
from search_spaces.gate_space import ON, SHARED_OPTION, SPECIFIC_OPTION, GateSpace, ParamCostModel, fusion_subsets
from search_spaces.model.conv import Adapter, ConvStem, ParallelBranch, stage_channels
from search_spaces.model.shared_clip import TextTower, VisionTower
from search_spaces.model.transformer import SUBLAYER_MODULES, SharedBlock, run_block, sublayer_factories

from nas.supernet.gates import GateSample


class Routing:
    """The path the supernet runs: one choice per gate (forced gates already applied) and, while the
    architecture is being trained, the straight-through weights of the chosen options."""

    def __init__(self, space: GateSpace) -> None:
        self.space = space
        self.choices: list[int] = space.normalize([SHARED_OPTION] * space.num_gates)
        self.weights: torch.Tensor | None = None
        self.soft: torch.Tensor | None = None
        self.soft_gates: frozenset[int] = frozenset()

    def set(self, sample: GateSample, soft: torch.Tensor | None = None, soft_gates: frozenset[int] = frozenset()) -> None:
        """Route `sample`; gates in `soft_gates` (unless forced) instead mix both options with the
        probabilities `soft` [G, 2] (detach them for a weight step, keep their graph for a gate step)."""
        self.choices = self.space.normalize(sample.choices)
        self.soft = soft
        self.soft_gates = frozenset(soft_gates) - set(self.space.forced(self.choices)) if soft is not None else frozenset()
        weights = sample.weights
        forced = self.space.forced(self.choices)
        if weights is not None and forced:
            keep = torch.ones_like(weights, dtype=torch.bool)
            keep[forced] = False
            weights = torch.where(keep, weights, torch.ones_like(weights).detach())
        self.weights = weights

    def weight(self, gate: int | None) -> torch.Tensor | None:
        return None if self.weights is None or gate is None else self.weights[gate]


def _weighted(module: Callable[..., torch.Tensor], weight: torch.Tensor, *args) -> torch.Tensor:
    return module(*args) * weight


def _mixed(shared: Callable[..., torch.Tensor], specific: Callable[..., torch.Tensor], probs: torch.Tensor, *args) -> torch.Tensor:
    return probs[SHARED_OPTION] * shared(*args) + probs[SPECIFIC_OPTION] * specific(*args)


class GatedSlot(nn.Module):
    """A sublayer position holding `shared`, `vision` and `text` modules; `select` returns the one
    the routing chose for this modality (times the straight-through weight when there is one).
    With `entangled`, `vision` and `text` hold deltas: the specific module is shared + delta."""

    def __init__(self, make: Callable[[int], nn.Module], width: int, routing: Routing, gate: int, entangled: bool = False) -> None:
        super().__init__()
        self.shared, self.vision, self.text = make(width), make(width), make(width)
        self.routing, self.gate, self.entangled = routing, gate, entangled

    def tie_init(self) -> None:
        """Start every option of the gate as the same function: entangled deltas at zero, otherwise
        the specific modules as copies of the shared one. No option leads by the luck of its random
        init, and the sampled paths start as one coherent network instead of a random patchwork."""
        with torch.no_grad():
            for copy in (self.vision, self.text):
                for target, source in zip(copy.parameters(), self.shared.parameters()):
                    if self.entangled:
                        target.zero_()
                    else:
                        target.copy_(source)

    def specific_params(self, modality: str) -> dict[str, torch.Tensor]:
        """The specific module's parameters under the shared module's names (shared + delta when entangled)."""
        own = dict(self._modules[modality].named_parameters())
        if not self.entangled:
            return own
        return {name: p + own[name] for name, p in self.shared.named_parameters()}

    def _specific(self, modality: str) -> Callable[..., torch.Tensor]:
        if not self.entangled:
            return self._modules[modality]
        return lambda *args: functional_call(self.shared, self.specific_params(modality), args)

    def select(self, modality: str) -> Callable[..., torch.Tensor]:
        routing = self.routing
        if self.gate in routing.soft_gates:
            return partial(_mixed, self.shared, self._specific(modality), routing.soft[self.gate])
        module = self.shared if routing.choices[self.gate] == SHARED_OPTION else self._specific(modality)
        weight = routing.weight(self.gate)
        return module if weight is None else partial(_weighted, module, weight)


class PatchOrStem(nn.Module):
    """Stands in for the vision tower's `conv1`: the patch embedding, or the ES conv stem when the ES
    gate is on (so `VisionTower.embed` is reused as is)."""

    def __init__(self, patch: nn.Module, stem: ConvStem, routing: Routing, gate: int) -> None:
        super().__init__()
        self.patch, self.stem = patch, stem
        self.routing, self.gate = routing, gate

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.stem(image) if self.routing.choices[self.gate] == ON else self.patch(image)


class Supernet(SharedCLIP):
    """All policies of a `GateSpace` in one model; see the module docstring."""

    def __init__(self, space: GateSpace, entangle: bool = False) -> None:
        nn.Module.__init__(self)
        self.entangle = entangle
        size = space.size
        self.space, self.size = space, size
        self.routing = Routing(space)
        base = SharingPolicy(tuple(LayerSharing.uniform("specific") for _ in range(size.layers)), name="supernet-base")
        self.visual = VisionTower(size, base)
        if space.early_specialization:
            self.visual.conv1 = PatchOrStem(self.visual.conv1, ConvStem(size), self.routing, space.es_gate)
        if space.fusion_layers:
            spec = space.branch_spec(space.fusion_layers)
            chans = stage_channels(size.width)
            self.visual.parallel = ParallelBranch(size, spec)
            self.visual.adapters = nn.ModuleDict(
                {
                    adapter_key(layer, s): Adapter(chans[s], size.width, spec.kernels_for(size)[s], spec.dwconv)
                    for j, layer in enumerate(space.fusion_layers)
                    for s in range(j + 1)
                }
            )
        self.text = TextTower(size, size.width)
        make = sublayer_factories(size)
        self.blocks = nn.ModuleList(
            SharedBlock(
                **{SUBLAYER_MODULES[sub]: GatedSlot(make[sub], size.width, self.routing, space.layer_gate(i, sub), entangle) for sub in ("ln1", "attn", "ln2", "ffn")}
            )
            for i in range(size.layers)
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.grad_checkpointing = False
        self._init_blocks()
        for module in self.modules():
            if isinstance(module, GatedSlot):
                module.tie_init()

    @property
    def policy(self) -> SharingPolicy:
        """The policy of the current routing."""
        return self.space.to_policy(self.routing.choices, name="routed")

    def route(self, sample: GateSample, soft: torch.Tensor | None = None, soft_gates: frozenset[int] = frozenset()) -> None:
        self.routing.set(sample, soft, soft_gates)

    def fix(self, policy: SharingPolicy) -> None:
        """Run `policy`'s path (no straight-through weights): inherited-weight evaluation."""
        self.routing.set(GateSample(self.space.from_policy(policy)))

    def _image_tokens(self, image: torch.Tensor, collect: list[torch.Tensor] | None = None) -> torch.Tensor:
        space, routing = self.space, self.routing
        es = space.es_on(routing.choices)
        es_weight = routing.weight(space.es_gate)
        enabled = space.enabled_fusion(routing.choices)
        branch = self._branch_features(image, len(enabled))
        x = self.visual.embed(image)
        if es and es_weight is not None:
            x = x * es_weight
        stage = 0
        for i in range(1 if es else 0, len(self.blocks)):
            if i in space.fusion_layers:
                if i in enabled:
                    x = self.visual.adapters[adapter_key(i, stage)](x, branch[stage])
                    stage += 1
                weight = routing.weight(space.fusion_gate(space.fusion_layers.index(i)))
                if weight is not None:
                    x = x * weight
            x = run_block(self.blocks[i], x, "vision", self.grad_checkpointing)
            if i == 0 and es_weight is not None:
                x = x * es_weight
            if collect is not None:
                collect.append(x)
        return x

    def _branch_features(self, image: torch.Tensor, stages: int) -> list[torch.Tensor]:
        """The first `stages` stages of the parallel branch (none are computed when no fusion is on)."""
        feats, x = [], image
        for stage in self.visual.parallel.stages[:stages] if stages else ():
            x = stage(x)
            feats.append(x)
        return feats

    def cost_model(self) -> ParamCostModel:
        """Exact standalone parameter counts of every choice, from this supernet's module sizes."""
        space, visual = self.space, self.visual

        def numel(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        patch = numel(visual.conv1.patch) if space.early_specialization else numel(visual.conv1)
        stem = numel(visual.conv1.stem) if space.early_specialization else 0
        extras = numel(visual.conv1) + (numel(visual.parallel) + numel(visual.adapters) if space.fusion_layers else 0)
        base = numel(visual) - extras + numel(self.text) + self.logit_scale.numel()
        sublayer = tuple(
            numel(getattr(block, SUBLAYER_MODULES[sub]).shared) for block in self.blocks for sub in SUBLAYERS
        )
        fusion = {}
        for subset in fusion_subsets(space.fusion_layers):
            stages = numel(visual.parallel.stages[: len(subset)]) if subset else 0
            fusion[subset] = stages + sum(numel(visual.adapters[adapter_key(layer, s)]) for s, layer in enumerate(subset))
        return ParamCostModel(space, base, sublayer, patch, stem, fusion)

    def standalone_state_dict(self, policy: SharingPolicy) -> dict[str, torch.Tensor]:
        """The inherited weights of `policy` under the names of `build_model(policy, size)`."""
        choices = self.space.normalize(self.space.from_policy(policy))
        es, enabled = self.space.es_on(choices), self.space.enabled_fusion(choices)
        stage_of = {layer: s for s, layer in enumerate(enabled)}
        out, state = {}, self.state_dict()
        for name, tensor in state.items():
            parts = name.split(".")
            if parts[0] == "blocks":
                i, slot, owner = int(parts[1]), parts[2], parts[3]
                gate = self.blocks[i]._modules[slot].gate
                wanted = {"shared"} if choices[gate] == SHARED_OPTION else ({"text"} if es and i == 0 else {"vision", "text"})
                if owner not in wanted:
                    continue
                if owner != "shared" and self.entangle:
                    tensor = tensor + state[".".join([*parts[:3], "shared", *parts[4:]])]
            elif parts[:2] == ["visual", "conv1"] and self.space.early_specialization:
                if parts[2] != ("stem" if es else "patch"):
                    continue
                name = ".".join(["visual", "stem", *parts[3:]] if es else ["visual", "conv1", *parts[3:]])
            elif parts[:2] == ["visual", "parallel"]:
                if not enabled or int(parts[3]) >= len(enabled):
                    continue
            elif parts[:2] == ["visual", "adapters"]:
                layer, stage = map(int, parts[2].split("_"))
                if stage_of.get(layer) != stage:
                    continue
                name = ".".join(["visual", "adapters", str(layer), *parts[3:]])
            out[name] = tensor
        return out


def adapter_key(layer: int, stage: int) -> str:
    """Adapters are kept per (fusion layer, branch stage feeding it): the stage depends on how many
    earlier fusion layers are on."""
    return f"{layer}_{stage}"
