"""The Gumbel supernet: a `SharedCLIP` whose every (layer, sublayer) slot holds a shared and a
modality-specific module behind a gate, plus optional early-specialization and fusion gates.

It is `SharedCLIP` built with `GatedSlot`s as its sublayer slots and a `GatedVisionTower` (the
patch embedding or the ES conv stem, and every candidate fusion layer's adapters); the geometry,
the initialisation and the forward pass, fusion loop included, are `SharedCLIP`'s. Which path runs
is set per step on its `Routing` (one choice per gate); **only the chosen module of each gate
runs**. When the routing carries straight-through weights, each chosen module's output is
multiplied by its weight (exactly 1.0) so the gate logits get gradients. Gates the routing marks
`soft` (the LayerNorm gates under `search.ln_gates: soft`) instead run both options and mix their
outputs with the gate's probabilities.

Weight entanglement (`space.entangle`, as AutoFormer's supernets): a slot's modality-specific module
is the shared module plus a zero-initialised per-modality delta (the `vision` / `text` modules hold
the deltas), so flipping a gate toggles a small residual instead of swapping in a separately trained
module, and every path trains the shared weights.

`standalone_state_dict` maps a policy's path to its standalone model from the module structure: each
gated module gives the state of the option the policy chooses, under the name the standalone model
has for it (entangled deltas folded into plain weights).

The gate logits are not part of the supernet (`parameters()` holds the weights only), so the
weights' optimizer, weight-decay groups, checkpoints and gradient synchronisation never see them.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from search_spaces import SUBLAYERS, SharedCLIP, SharingPolicy
from search_spaces.gate_space import ON, SHARED_OPTION, SPECIFIC_OPTION, GateSpace, ParamCostModel, fusion_subsets
from search_spaces.model.conv import ConvStem, ParallelBranch, stage_adapter
from search_spaces.model.shared_clip import VisionRoute, VisionTower
from search_spaces.model.transformer import SUBLAYER_MODULES

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

    def standalone_state(self, option: int, towers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The state of a `SharingSlot` holding `option` (the shared module, or one per tower in
        `towers`), deltas folded in."""
        if option == SHARED_OPTION:
            return prefixed("shared", self.shared.state_dict())
        shared = self.shared.state_dict()
        state = {}
        for tower in towers:
            own = self._modules[tower].state_dict()
            state |= prefixed(tower, {k: v + shared[k] for k, v in own.items()} if self.entangled else own)
        return state


class PatchOrStem(nn.Module):
    """Stands in for the vision tower's `conv1`: the patch embedding, or the ES conv stem when the ES
    gate is on (so `VisionTower.embed` is reused as is)."""

    def __init__(self, patch: nn.Module, stem: ConvStem, routing: Routing, gate: int) -> None:
        super().__init__()
        self.patch, self.stem = patch, stem
        self.routing, self.gate = routing, gate

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.stem(image) if self.routing.choices[self.gate] == ON else self.patch(image)


class GatedVisionTower(VisionTower):
    """The vision tower of every policy of `space`: a `PatchOrStem` when ES is searched, and the
    parallel branch with one adapter per (fusion layer, branch stage feeding it) when fusion is."""

    def __init__(self, space: GateSpace, routing: Routing) -> None:
        size = space.size
        super().__init__(size)
        self.space, self.routing = space, routing
        if space.early_specialization:
            self.conv1 = PatchOrStem(self.conv1, ConvStem(size), routing, space.es_gate)
        if space.fusion_layers:
            spec = space.branch_spec(space.fusion_layers)
            self.parallel = ParallelBranch(size, spec)
            self.adapters = nn.ModuleDict(
                {adapter_key(layer, s): stage_adapter(size, spec, s) for j, layer in enumerate(space.fusion_layers) for s in range(j + 1)}
            )

    def route(self) -> VisionRoute:
        space, routing = self.space, self.routing
        enabled = space.enabled_fusion(routing.choices)
        es_weight = routing.weight(space.es_gate)
        return VisionRoute(
            1 if space.es_on(routing.choices) else 0,
            {layer: self.adapters[adapter_key(layer, s)] for s, layer in enumerate(enabled)},
            after={} if es_weight is None else {0: es_weight},
            entering={
                layer: weight for j, layer in enumerate(space.fusion_layers) if (weight := routing.weight(space.fusion_gate(j))) is not None
            },
        )

    def standalone_state(self, choices: list[int]) -> dict[str, torch.Tensor]:
        """The state of the `VisionTower` of `choices`: the chosen input embedding under its own name
        (`conv1` or `stem`), the enabled fusion layers' branch stages and adapters."""
        enabled = self.space.enabled_fusion(choices)
        children = dict(self.named_children())
        if isinstance(children.pop("conv1"), PatchOrStem):
            es = self.space.es_on(choices)
            children["stem" if es else "conv1"] = self.conv1.stem if es else self.conv1.patch
        else:
            children["conv1"] = self.conv1
        if children.pop("parallel", None) is not None and enabled:
            children["parallel.stages"] = self.parallel.stages[: len(enabled)]
        if children.pop("adapters", None) is not None and enabled:
            children["adapters"] = nn.ModuleDict({str(layer): self.adapters[adapter_key(layer, s)] for s, layer in enumerate(enabled)})
        state = {name: p.detach() for name, p in self.named_parameters(recurse=False)}
        for name, child in children.items():
            state |= prefixed(name, child.state_dict())
        return state


class Supernet(SharedCLIP):
    """All policies of a `GateSpace` in one model; see the module docstring."""

    def __init__(self, space: GateSpace, entangle: bool = False) -> None:
        routing = Routing(space)

        def gated(layer: int, sublayer: str, make: Callable[[int], nn.Module]) -> GatedSlot:
            return GatedSlot(make, space.size.width, routing, space.layer_gate(layer, sublayer), entangle)

        super().__init__(space.to_policy(routing.choices, name="routed"), space.size, gated, partial(GatedVisionTower, space, routing))
        self.space, self.routing, self.entangle = space, routing, entangle
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
        es = self.space.es_on(choices)
        state = prefixed("visual", self.visual.standalone_state(choices)) | prefixed("text", self.text.state_dict())
        for i, block in enumerate(self.blocks):
            towers = ("text",) if es and i == 0 else ("vision", "text")
            for name, slot in block.named_children():
                state |= prefixed(f"blocks.{i}.{name}", slot.standalone_state(choices[slot.gate], towers))
        return state | {"logit_scale": self.logit_scale.detach()}


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` as the state of a child named `prefix`."""
    return {f"{prefix}.{name}": tensor for name, tensor in state.items()}


def adapter_key(layer: int, stage: int) -> str:
    """Adapters are kept per (fusion layer, branch stage feeding it): the stage depends on how many
    earlier fusion layers are on."""
    return f"{layer}_{stage}"
