"""The gate space of the Gumbel supernet search: its gates, the mapping between gate choices and
`SharingPolicy`s, and the exact parameter count of a choice (and its expectation under the gates).
The supernet that runs these gates is `nas/supernet/model.py`; the gate math (Gumbel sampling,
temperatures, the budget term) is `nas/supernet/gates.py`.

Gates, in index order (every gate is binary, option 0 first):
- one per (layer, sublayer), `L03.attn`: 0 = shared, 1 = specific, layer-major in `SUBLAYERS` order;
- `es` when early specialization is searched: 0 = off, 1 = on (on replaces the patch embedding and
  vision layer 0 with the conv stem, and forces layer 0's gates to specific, as policies require);
- `fusion.L04` per candidate fusion layer of the parallel branch: 0 = off, 1 = on. The enabled
  layers, in order, are fed by the branch's stages 0, 1, ... with `default_adapter_kernels`, so
  every choice is a valid `ParallelBranchSpec`.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from .policy import (
    CHOICES, MAX_FUSION_STAGES, SHARED, SPECIFIC, SUBLAYERS, LayerSharing, ParallelBranchSpec, PolicyError, SharingPolicy,
    default_adapter_kernels,
)
from .presets import paper_fusion_layers
from .sizes import ModelSize, get_size

SHARED_OPTION, SPECIFIC_OPTION = CHOICES.index(SHARED), CHOICES.index(SPECIFIC)
"""A layer gate's options: option i is the sharing choice `CHOICES[i]`."""
OFF, ON = 0, 1


@dataclass(frozen=True)
class GateSpace:
    """Which gates a supernet at `size` has (the layer gates always; ES and fusion optionally).
    A definition that no supernet can realise is a `PolicyError`."""

    size: ModelSize
    early_specialization: bool = True
    fusion_layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        fl, n = list(self.fusion_layers), self.size.layers
        if len(fl) > MAX_FUSION_STAGES:
            raise PolicyError(f"search.fusion_layers: {len(fl)} candidates; the parallel branch has at most {MAX_FUSION_STAGES} stages")
        if fl != sorted(set(fl)) or any(not 1 <= layer < n for layer in fl):
            raise PolicyError(f"search.fusion_layers: {fl} must be strictly increasing layer indices in 1..{n - 1}")
        if fl and self.size.patch_size < 2:
            raise PolicyError(f"search.fusion_layers: size {self.size.name!r} has patch size {self.size.patch_size}; the branch needs >= 2")

    # gate layout -----------------------------------------------------------------------------------

    @property
    def num_layer_gates(self) -> int:
        return self.size.layers * len(SUBLAYERS)

    @property
    def es_gate(self) -> int | None:
        return self.num_layer_gates if self.early_specialization else None

    def layer_gate(self, layer: int, sublayer: str) -> int:
        return layer * len(SUBLAYERS) + SUBLAYERS.index(sublayer)

    def fusion_gate(self, j: int) -> int:
        return self.num_layer_gates + int(self.early_specialization) + j

    @property
    def num_gates(self) -> int:
        return self.num_layer_gates + int(self.early_specialization) + len(self.fusion_layers)

    def gate_names(self) -> list[str]:
        names = [f"L{i:02d}.{sub}" for i in range(self.size.layers) for sub in SUBLAYERS]
        if self.early_specialization:
            names.append("es")
        return names + [f"fusion.L{layer:02d}" for layer in self.fusion_layers]

    def option_names(self, gate: int) -> tuple[str, str]:
        return CHOICES if gate < self.num_layer_gates else ("off", "on")

    def branch_spec(self, layers: tuple[int, ...]) -> ParallelBranchSpec:
        return ParallelBranchSpec(layers, default_adapter_kernels(self.size.patch_size, len(layers)), dwconv=True)

    # choices <-> policies --------------------------------------------------------------------------

    def es_on(self, choices: list[int]) -> bool:
        return self.early_specialization and choices[self.es_gate] == ON

    def enabled_fusion(self, choices: list[int]) -> tuple[int, ...]:
        return tuple(layer for j, layer in enumerate(self.fusion_layers) if choices[self.fusion_gate(j)] == ON)

    def forced(self, choices: list[int]) -> list[int]:
        """Gates whose choice another gate fixes: layer 0's, to specific, when ES is on."""
        return [self.layer_gate(0, sub) for sub in SUBLAYERS] if self.es_on(choices) else []

    def normalize(self, choices: list[int]) -> list[int]:
        """`choices` with the forced gates set (what the supernet runs and what a policy records)."""
        if len(choices) != self.num_gates:
            raise ValueError(f"{len(choices)} gate choices for a space of {self.num_gates} gates")
        out = list(choices)
        for g in self.forced(out):
            out[g] = SPECIFIC_OPTION
        return out

    def flip(self, choices: list[int], gate: int) -> list[int]:
        """`choices` with `gate` flipped, normalized. The gates that only it forced go back to shared: with
        ES on, layer 0 is forced specific, and ES off alone can cost more than ES on (the image tower's own
        patch embedding and layer 0 take the conv stem's place), so the all-shared policy would be out of
        every single flip's reach."""
        out = [1 - c if i == gate else c for i, c in enumerate(choices)]
        for g in set(self.forced(choices)) - set(self.forced(out)):
            out[g] = SHARED_OPTION
        return self.normalize(out)

    def to_policy(self, choices: list[int], name: str = "custom") -> SharingPolicy:
        choices = self.normalize(choices)
        layers = tuple(
            LayerSharing(**{sub: CHOICES[choices[self.layer_gate(i, sub)]] for sub in SUBLAYERS})
            for i in range(self.size.layers)
        )
        fusion = self.enabled_fusion(choices)
        return SharingPolicy(
            layers, early_specialization=self.es_on(choices), parallel_branch=self.branch_spec(fusion) if fusion else None, name=name
        )

    def from_policy(self, policy: SharingPolicy) -> list[int]:
        """The gate choices realising `policy`; a `PolicyError` says why a policy is outside the space."""
        where = f"policy {policy.name!r} is outside this supernet's space"
        policy.check_size(self.size)
        if policy.text_width_for(self.size) != self.size.width:
            raise PolicyError(f"{where}: text_width {policy.text_width} differs from the width {self.size.width} the supernet uses")
        if policy.early_specialization and not self.early_specialization:
            raise PolicyError(f"{where}: it uses early specialization; set search.early_specialization: true")
        choices = [SHARED_OPTION] * self.num_gates
        for i, layer in enumerate(policy.layers):
            for sub in SUBLAYERS:
                choices[self.layer_gate(i, sub)] = CHOICES.index(getattr(layer, sub))
        if self.early_specialization:
            choices[self.es_gate] = ON if policy.early_specialization else OFF
        pb = policy.parallel_branch
        if pb is not None:
            default = self.branch_spec(pb.fusion_layers)
            if pb.kernels_for(self.size) != default.adapter_kernels or not pb.dwconv or not set(pb.fusion_layers) <= set(self.fusion_layers):
                raise PolicyError(
                    f"{where}: its parallel branch {pb.to_dict()} needs fusion layers among {list(self.fusion_layers)}, "
                    f"default adapter kernels and dwconv"
                )
            for j, layer in enumerate(self.fusion_layers):
                choices[self.fusion_gate(j)] = ON if layer in pb.fusion_layers else OFF
        return choices


@dataclass
class GateSpaceConfig:
    """A gate space as configuration (the `space:` section of a bench, the base of a supernet's):
    the model size by name and the optional gates beside the (layer, sublayer) gates."""

    size: str = "tiny"
    """The model size: b32, b16, small or tiny."""
    early_specialization: bool = True
    """Add a gate for early specialization (the conv stem)."""
    fusion_layers: list[int] = field(default_factory=lambda: list(paper_fusion_layers(12)))
    """Candidate layers for the parallel branch's adapters, one gate each (0-based: a layer's tokens
    entering that block; the paper's 2, 4, 6, 8, 10); an empty list searches no branch."""

    def build(self) -> GateSpace:
        """The space itself; an unknown size is a `ValueError`, a bad layout a `PolicyError`."""
        return GateSpace(get_size(self.size), self.early_specialization, tuple(self.fusion_layers))


@dataclass(frozen=True)
class ParamCostModel:
    """Exact parameter counts of the standalone model of any gate choice, from module sizes.

    `base`: everything every choice has (text tower, vision embeddings/LNs/projection, logit scale);
    `sublayer[g]`: parameters of one module of layer gate g; `patch` / `stem`: the patch embedding and
    the ES conv stem; `fusion[S]`: branch stages plus adapters for each set S of enabled fusion layers.
    """

    space: GateSpace
    base: int
    sublayer: tuple[int, ...]
    patch: int
    stem: int
    fusion: dict[tuple[int, ...], int]

    def exact(self, choices: list[int]) -> int:
        """Parameters of `space.to_policy(choices)` built standalone."""
        choices = self.space.normalize(choices)
        es = self.space.es_on(choices)
        total = self.base + (self.stem if es else self.patch)
        for g, n in enumerate(self.sublayer):
            text_only = es and g < len(SUBLAYERS)
            total += n if text_only or choices[g] == SHARED_OPTION else 2 * n
        return total + self.fusion[self.space.enabled_fusion(choices)]

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """Expected parameter count under independent gates with option probabilities `probs` [G, 2]
        (differentiable, float64; ES's forcing of layer 0 is accounted for exactly)."""
        space = self.space
        probs = probs.double()
        sizes = torch.tensor(self.sublayer, dtype=probs.dtype, device=probs.device)
        p_specific = probs[: space.num_layer_gates, SPECIFIC_OPTION]
        per_gate = sizes * (1.0 + p_specific)
        first = len(SUBLAYERS)
        if space.early_specialization:
            p_es = probs[space.es_gate, ON]
            layer0 = (1.0 - p_es) * per_gate[:first].sum() + p_es * sizes[:first].sum()
            total = layer0 + per_gate[first:].sum() + p_es * self.stem + (1.0 - p_es) * self.patch
        else:
            total = per_gate.sum() + self.patch
        for subset, cost in self.fusion.items():
            weight = probs.new_ones(())
            for j, layer in enumerate(space.fusion_layers):
                weight = weight * probs[space.fusion_gate(j), ON if layer in subset else OFF]
            total = total + weight * cost
        return total + self.base

    def extremes(self) -> tuple[int, int]:
        """(smallest, largest) parameter count in the space."""
        space, counts = self.space, []
        es_options = (OFF, ON) if space.early_specialization else (OFF,)
        subsets = list(self.fusion)
        for layer_choice, es, subset in itertools.product((SHARED_OPTION, SPECIFIC_OPTION), es_options, subsets):
            choices = [layer_choice] * space.num_layer_gates
            if space.early_specialization:
                choices.append(es)
            choices += [ON if layer in subset else OFF for layer in space.fusion_layers]
            counts.append(self.exact(choices))
        return min(counts), max(counts)


def fusion_subsets(layers: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every subset of the candidate fusion layers, in order (2**len(layers) of them)."""
    return [tuple(c) for k in range(len(layers) + 1) for c in itertools.combinations(layers, k)]
