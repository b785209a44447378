"""The layout space of the Optuna discrete search: trial parameters <-> `SharingPolicy`, declared
without Optuna (a trial is anything with `suggest_categorical` / `suggest_int`). Optuna's samplers,
studies and the grid order are `nas/discrete/`.

A trial first picks a `layout`: a layout family or a whole preset listed in `space.presets`
(`preset:share-attn-ffn-ln2`, ...). The baselines are not part of the space: they are trials of
their own (`nas.discrete.search`), so the sampler never spends a trial re-drawing one. The families
and their parameters:

- `share_last`: `share_last_k`, MS-CLIP sharing (attention + FFN) in the last K layers;
- `mask`: `share_lXX` per layer (XX = 00..11), shared layers use the `mask_combo` sublayers;
- `sublayers`: `sublayers_lXX` per layer, which of attn / ffn / ln1 / ln2 are shared
  (`"attn+ffn"`, `"none"`, ...).

Then, when enabled in the config: `early_specialization` (only offered when layer 0 shares nothing,
since early specialization makes vision layer 0 a conv stem), `parallel_branch`, its
`fusion_layers` (one categorical over every allowed subset, written `"2,4,6"`),
`adapter_halve_I` (does the adapter kernel of stage I halve; only offered while the kernel is > 1,
the first kernel is fixed at patch_size / 2) and `dwconv`. Every parameter assignment the space can
produce is therefore a valid policy; nothing is rejected after sampling. A space definition that
cannot be realised at its size is a `PolicyError` naming the `space.` key.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .policy import MAX_FUSION_STAGES, SUBLAYERS, LayerSharing, ParallelBranchSpec, PolicyError, SharingPolicy
from .presets import PRESET_NAMES, get_preset, share_last
from .sizes import ModelSize, get_size

Layout = Literal["share_last", "mask", "sublayers"]
LAYOUTS: tuple[str, ...] = ("share_last", "mask", "sublayers")
PRESET_PREFIX = "preset:"
NO_SUBLAYER = "none"


def combo_name(layer: LayerSharing) -> str:
    """`"attn+ffn"` for a layer sharing attention and FFN; `"none"` when nothing is shared."""
    shared = [s for s in SUBLAYERS if layer.is_shared(s)]
    return "+".join(shared) if shared else NO_SUBLAYER


def parse_combo(text: str, where: str = "combo") -> LayerSharing:
    """The layer that shares exactly the sublayers named in `text` (`"attn+ffn"`, `"none"`)."""
    if text == NO_SUBLAYER:
        return LayerSharing.uniform("specific")
    parts = text.split("+")
    unknown = [p for p in parts if p not in SUBLAYERS]
    if unknown or len(set(parts)) != len(parts):
        raise PolicyError(
            f"{where}: {text!r} is not a sublayer combination; join distinct sublayers of {', '.join(SUBLAYERS)} "
            f"with '+' (e.g. 'attn+ffn') or write '{NO_SUBLAYER}'"
        )
    return LayerSharing(**{s: "shared" if s in parts else "specific" for s in SUBLAYERS})


ALL_COMBOS: tuple[str, ...] = tuple(
    combo_name(LayerSharing(**dict(zip(SUBLAYERS, choice))))
    for choice in itertools.product(("specific", "shared"), repeat=len(SUBLAYERS))
)


@dataclass
class LayoutSpaceConfig:
    """Which dimensions are searched (the `space:` section of a search config).

    Booleans switch a dimension between searched (true) and fixed (false): early specialization
    and the parallel branch fixed off, adapter kernels fixed to halving at every stage, DWConv fixed on.
    """

    layouts: list[Layout] = field(default_factory=lambda: list(LAYOUTS))
    """The layout families a trial picks from: `share_last` (MS-CLIP sharing in the last K layers),
    `mask` (per layer: shared with `mask_combo`, or not), `sublayers` (per layer: which sublayers)."""
    share_last_k: tuple[int, int] | None = None
    """Inclusive range of K for `share_last`; null: 0..layers."""
    mask_combo: str = "attn+ffn"
    """Sublayers a layer shares when its `share_lXX` is true."""
    sublayer_combos: list[str] = field(default_factory=lambda: list(ALL_COMBOS))
    """The `sublayers` layout's choices per layer (`"attn+ffn"`, `"none"`, ...); default all 16."""
    presets: list[str] = field(default_factory=list)
    """Presets offered as whole layouts (`layout: preset:NAME`)."""
    early_specialization: bool = True
    """Search early specialization (offered only when layer 0 shares nothing); false: fixed off."""
    parallel_branch: bool = True
    """Search the parallel branch; false: fixed off."""
    fusion_layers: list[int] = field(default_factory=lambda: [2, 4, 6, 8, 10])
    """Candidate fusion layers (0-based, >= 1); the search picks 1..max_fusion_layers of them."""
    max_fusion_layers: int = MAX_FUSION_STAGES
    """The most fusion layers a policy has (1..5)."""
    adapter_kernels: bool = True
    """Search whether each adapter kernel halves; false: fixed to halving at every stage."""
    dwconv: bool = True
    """Search DWConv in the adapters against average pooling; false: fixed on."""
    narrow_text: bool = False
    """Offer `narrow_text` (the text tower at the size's narrow width, as `clip`) to policies that share
    nothing and have neither early specialization nor a parallel branch: `clip` becomes a point of the space."""

    def __post_init__(self) -> None:
        if len(set(self.layouts)) != len(self.layouts) or len(set(self.presets)) != len(self.presets):
            raise PolicyError(f"space: {self.layouts} / {self.presets} list a layout or preset twice")
        unknown = [p for p in self.presets if p not in PRESET_NAMES]
        if unknown:
            raise PolicyError(f"space.presets: {unknown[0]!r} is not a preset; presets: {', '.join(PRESET_NAMES)}")
        parse_combo(self.mask_combo, "space.mask_combo")
        if not self.sublayer_combos:
            raise PolicyError("space.sublayer_combos: empty; list at least one combination such as 'attn+ffn'")
        canonical = [combo_name(parse_combo(c, "space.sublayer_combos")) for c in self.sublayer_combos]
        if len(set(canonical)) != len(canonical):
            raise PolicyError(f"space.sublayer_combos: {self.sublayer_combos} names a combination twice")
        self.sublayer_combos = canonical
        if self.share_last_k is not None and not 0 <= self.share_last_k[0] <= self.share_last_k[1]:
            raise PolicyError(f"space.share_last_k: {list(self.share_last_k)} must be [low, high] with 0 <= low <= high")
        if not 1 <= self.max_fusion_layers <= MAX_FUSION_STAGES:
            raise PolicyError(f"space.max_fusion_layers: {self.max_fusion_layers} must be in 1..{MAX_FUSION_STAGES}")
        if self.parallel_branch:
            if not self.fusion_layers:
                raise PolicyError("space.fusion_layers: empty; list candidate fusion layers or set space.parallel_branch: false")
            if sorted(set(self.fusion_layers)) != list(self.fusion_layers) or self.fusion_layers[0] < 1:
                raise PolicyError(
                    f"space.fusion_layers: {self.fusion_layers} must be strictly increasing layer indices >= 1 "
                    "(layer 0 becomes the conv stem under early specialization)"
                )


class TrialLike(Protocol):
    """What the space needs from a trial: `optuna.Trial`, `optuna.trial.FixedTrial`, or the grid enumerator."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...


class LayoutSpace:
    """Maps trial parameters to a `SharingPolicy` at one model size."""

    def __init__(self, cfg: LayoutSpaceConfig, size: str | ModelSize) -> None:
        self.cfg = cfg
        self.size = get_size(size)
        n = self.size.layers
        for name in cfg.presets:
            get_preset(name, self.size).check_size(self.size)
        self.layout_choices: list[str] = [*cfg.layouts, *(PRESET_PREFIX + p for p in cfg.presets)]
        if not self.layout_choices:
            raise PolicyError("space.layouts: empty and space.presets too; list at least one layout")
        low, high = cfg.share_last_k if cfg.share_last_k is not None else (0, n)
        if high > n:
            raise PolicyError(f"space.share_last_k: {high} exceeds the {n} layers of size {self.size.name!r}")
        self.share_last_range = (low, high)
        if cfg.parallel_branch and cfg.fusion_layers[-1] >= n:
            raise PolicyError(f"space.fusion_layers: {cfg.fusion_layers[-1]} is outside 1..{n - 1} for size {self.size.name!r}")
        limit = min(cfg.max_fusion_layers, len(cfg.fusion_layers))
        self.fusion_choices: list[str] = [
            ",".join(map(str, subset))
            for k in range(1, limit + 1)
            for subset in itertools.combinations(cfg.fusion_layers, k)
        ]

    def suggest(self, trial: TrialLike) -> SharingPolicy:
        """Draw (or replay) every parameter of one trial and build its policy."""
        layout = trial.suggest_categorical("layout", self.layout_choices)
        if layout.startswith(PRESET_PREFIX):
            return get_preset(layout[len(PRESET_PREFIX):], self.size)
        layers, name = self._layers(trial, layout)
        es = False
        if self.cfg.early_specialization and not layers[0].any_shared:
            es = trial.suggest_categorical("early_specialization", [False, True])
        branch = None
        if self.cfg.parallel_branch and trial.suggest_categorical("parallel_branch", [False, True]):
            branch = self._branch(trial)
        narrow = False
        if self.cfg.narrow_text and not es and branch is None and not any(layer.any_shared for layer in layers):
            narrow = trial.suggest_categorical("narrow_text", [False, True])
        name += "+es" if es else ""
        name += f"+pb[{','.join(map(str, branch.fusion_layers))}]" if branch else ""
        name += "+narrow-text" if narrow else ""
        text_width = self.size.narrow_text_width if narrow else None
        policy = SharingPolicy(layers, text_width=text_width, early_specialization=es, parallel_branch=branch, name=name)
        policy.check_size(self.size)
        return policy

    def _layers(self, trial: TrialLike, layout: str) -> tuple[tuple[LayerSharing, ...], str]:
        n = self.size.layers
        if layout == "share_last":
            k = trial.suggest_int("share_last_k", *self.share_last_range)
            return share_last(k, self.size).layers, f"share-last-{k}"
        if layout == "mask":
            shared, specific = parse_combo(self.cfg.mask_combo), LayerSharing.uniform("specific")
            bits = [trial.suggest_categorical(f"share_l{i:02d}", [False, True]) for i in range(n)]
            return tuple(shared if b else specific for b in bits), "mask-" + "".join("1" if b else "0" for b in bits)
        combos = [trial.suggest_categorical(f"sublayers_l{i:02d}", self.cfg.sublayer_combos) for i in range(n)]
        # One hex digit per layer: attn=1, ffn=2, ln1=4, ln2=8.
        code = "".join(f"{sum(1 << j for j, s in enumerate(SUBLAYERS) if s in c.split('+')):x}" for c in combos)
        return tuple(parse_combo(c) for c in combos), f"sublayers-{code}"

    def _branch(self, trial: TrialLike) -> ParallelBranchSpec:
        fusion = tuple(int(x) for x in trial.suggest_categorical("fusion_layers", self.fusion_choices).split(","))
        kernels = [self.size.patch_size // 2]
        for stage in range(1, len(fusion)):
            previous = kernels[-1]
            halve = previous > 1
            if self.cfg.adapter_kernels and previous > 1:
                halve = trial.suggest_categorical(f"adapter_halve_{stage}", [False, True])
            kernels.append(previous // 2 if halve else previous)
        dwconv = trial.suggest_categorical("dwconv", [True, False]) if self.cfg.dwconv else True
        return ParallelBranchSpec(fusion, tuple(kernels), dwconv)

    def params_of(self, policy: SharingPolicy) -> dict[str, Any] | None:
        """The parameters under which `suggest` builds `policy` (its name aside), in the first layout
        family of the config that can express it; None if none can. Enqueuing the baselines with these,
        rather than a parameter of their own, keeps NSGA-II's intersection search space (taken over
        every completed trial) from being empty."""
        target = _unnamed(policy)
        for layout in self.cfg.layouts:
            params = self._layer_params(policy, layout)
            if params is None:
                continue
            params.update(self._extra_params(policy))
            replay = FixedParams(params)
            try:
                built = self.suggest(replay)
            except (KeyError, ValueError, PolicyError):
                continue
            if _unnamed(built) == target:
                return replay.asked
        return None

    def _layer_params(self, policy: SharingPolicy, layout: str) -> dict[str, Any] | None:
        combos = [combo_name(layer) for layer in policy.layers]
        if layout == "sublayers":
            return {"layout": layout, **{f"sublayers_l{i:02d}": c for i, c in enumerate(combos)}}
        shared = combo_name(parse_combo(self.cfg.mask_combo))
        if any(c not in (shared, NO_SUBLAYER) for c in combos):
            return None
        bits = [c == shared for c in combos]
        if layout == "mask":
            return {"layout": layout, **{f"share_l{i:02d}": b for i, b in enumerate(bits)}}
        k = sum(bits)
        return {"layout": layout, "share_last_k": k} if bits == [False] * (len(bits) - k) + [True] * k else None

    def _extra_params(self, policy: SharingPolicy) -> dict[str, Any]:
        params: dict[str, Any] = {"early_specialization": policy.early_specialization, "narrow_text": policy.text_width is not None}
        branch = policy.parallel_branch
        params["parallel_branch"] = branch is not None
        if branch is not None:
            params["fusion_layers"] = ",".join(map(str, branch.fusion_layers))
            params["dwconv"] = branch.dwconv
            kernels = branch.adapter_kernels
            params.update({f"adapter_halve_{i}": kernels[i] < kernels[i - 1] for i in range(1, len(kernels))})
        return params

    def assignments(self) -> Iterator[dict[str, Any]]:
        """Every distinct parameter assignment (conditional parameters only where offered), lazily:
        a grid over a large space is cut off by its consumer."""
        return _walk(self.suggest)


def _unnamed(policy: SharingPolicy) -> dict[str, Any]:
    data = policy.to_dict()
    data.pop("name")
    return data


class FixedParams:
    """A trial that answers every suggestion from `params` and records the ones asked (`asked`)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params, self.asked = params, {}

    def _get(self, name: str, options: Sequence[Any]) -> Any:
        value = self.params[name]
        if value not in options:
            raise ValueError(f"{name}: {value!r} is not one of {list(options)}")
        self.asked[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._get(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self._get(name, range(low, high + 1))


class _Replay:
    """A trial that answers each suggestion with a preset choice index and records the options."""

    def __init__(self, path: list[int]) -> None:
        self.path, self.depth, self.widths, self.params = path, 0, [], {}

    def _choose(self, name: str, options: Sequence[Any]) -> Any:
        if self.depth == len(self.path):
            self.path.append(0)
        value = options[self.path[self.depth]]
        self.widths.append(len(options))
        self.depth += 1
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._choose(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self._choose(name, list(range(low, high + 1)))


def _walk(suggest: Any) -> Iterator[dict[str, Any]]:
    """Depth-first over the decision tree that `suggest` traces, one leaf (assignment) at a time."""
    path: list[int] = []
    while True:
        replay = _Replay(path)
        suggest(replay)
        yield dict(replay.params)
        path = path[: replay.depth]
        while path and path[-1] + 1 >= replay.widths[len(path) - 1]:
            path.pop()
        if not path:
            return
        path[-1] += 1
