"""The Optuna search space and config: every sample is a valid policy, baselines are exact presets,
and bad configs fail with one clear line. No training here."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FixedTrial

from nas.discrete.config import load_search_config
from nas.discrete.samplers import grid_order
from search_spaces import SUBLAYERS, LayoutSpace, LayoutSpaceConfig, PolicyError, get_preset, get_size
from search_spaces.layout_space import ALL_COMBOS, combo_name, parse_combo
from search_spaces.policy import default_adapter_kernels
from trainer.typed_config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ["msclip", "clip", "msclip-s"]
TINY = get_size("tiny")


def _sample(space: LayoutSpace, n: int, seed: int = 0) -> list[tuple[dict, object]]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        policy = space.suggest(trial)
        out.append((dict(trial.params), policy))
        study.tell(trial, 0.0)
    return out


def test_random_samples_are_valid_policies_covering_every_dimension() -> None:
    space = LayoutSpace(LayoutSpaceConfig(), "tiny")
    samples = _sample(space, 400)
    layouts = {params["layout"] for params, _ in samples}
    assert layouts == set(space.layout_choices)
    seen_es = seen_pb = seen_no_dwconv = seen_keep_kernel = False
    for params, policy in samples:
        policy.check_size(TINY)  # raises if invalid
        if policy.early_specialization:
            seen_es = True
            assert not policy.layers[0].any_shared
        if "early_specialization" in params:
            assert not policy.layers[0].any_shared  # only offered when layer 0 shares nothing
        pb = policy.parallel_branch
        if pb is not None:
            seen_pb = True
            assert 1 <= len(pb.fusion_layers) <= 5 and set(pb.fusion_layers) <= {2, 4, 6, 8, 10}
            assert pb.adapter_kernels[0] == TINY.patch_size // 2
            for a, b in zip(pb.adapter_kernels, pb.adapter_kernels[1:]):
                assert b in (a, a // 2) and b >= 1
                seen_keep_kernel |= a == b and a > 1
            seen_no_dwconv |= not pb.dwconv
    assert seen_es and seen_pb and seen_no_dwconv and seen_keep_kernel


def test_share_last_k_12_never_offers_early_specialization() -> None:
    space = LayoutSpace(LayoutSpaceConfig(layouts=["share_last"], parallel_branch=False), "tiny")
    grid = list(space.assignments())
    k12 = [p for p in grid if p.get("share_last_k") == 12]
    assert k12 == [{"layout": "share_last", "share_last_k": 12}]
    # 13 values of K, 12 of them with ES on/off
    assert len(grid) == 12 * 2 + 1


@pytest.mark.parametrize("name", ["msclip-s", "share-attn-ffn-ln2"])
def test_preset_layouts_are_exactly_the_presets(name: str) -> None:
    space = LayoutSpace(LayoutSpaceConfig(presets=["msclip-s", "share-attn-ffn-ln2"]), "tiny")
    assert space.layout_choices == ["share_last", "mask", "sublayers", "preset:msclip-s", "preset:share-attn-ffn-ln2"]
    policy = space.suggest(FixedTrial({"layout": f"preset:{name}"}))
    assert policy == get_preset(name, "tiny") and policy.name == name


def test_parameters_decode_to_the_expected_policy() -> None:
    space = LayoutSpace(LayoutSpaceConfig(), "tiny")
    params = {
        "layout": "sublayers", **{f"sublayers_l{i:02d}": "none" if i < 2 else "attn+ffn+ln2" for i in range(12)},
        "early_specialization": True, "parallel_branch": True, "fusion_layers": "2,6,10",
        "adapter_halve_1": False, "adapter_halve_2": True, "dwconv": False,
    }
    policy = space.suggest(FixedTrial(params))
    assert policy.early_specialization
    assert [combo_name(layer) for layer in policy.layers] == ["none"] * 2 + ["attn+ffn+ln2"] * 10
    pb = policy.parallel_branch
    assert (pb.fusion_layers, pb.adapter_kernels, pb.dwconv) == ((2, 6, 10), (4, 4, 2), False)
    assert policy.name == "sublayers-00bbbbbbbbbb+es+pb[2,6,10]"


def test_fixed_dimensions_are_not_searched() -> None:
    cfg = LayoutSpaceConfig(layouts=["mask"], early_specialization=False, adapter_kernels=False, dwconv=False, fusion_layers=[1, 3, 5, 7, 9, 11])
    space = LayoutSpace(cfg, "tiny")
    for params, policy in _sample(space, 60):
        assert not {"early_specialization", "dwconv", "adapter_halve_1"} & set(params)
        assert not policy.early_specialization
        if policy.parallel_branch is not None:
            pb = policy.parallel_branch
            assert pb.dwconv and pb.adapter_kernels == default_adapter_kernels(TINY.patch_size, len(pb.fusion_layers))
    assert len(space.fusion_choices) == 6 + 15 + 20 + 15 + 6  # subsets of 1..5 of 6 candidates


def test_combos_round_trip() -> None:
    assert len(ALL_COMBOS) == 16 and ALL_COMBOS[0] == "none" and "attn+ffn+ln1+ln2" in ALL_COMBOS
    for combo in ALL_COMBOS:
        assert combo_name(parse_combo(combo)) == combo
    layer = parse_combo("ffn+attn")
    assert [layer.is_shared(s) for s in SUBLAYERS] == [True, True, False, False]


def test_grid_limit_is_a_clear_error() -> None:
    space = LayoutSpace(LayoutSpaceConfig(layouts=["mask"]), "tiny")
    with pytest.raises(ConfigError, match="more than 500 configurations"):
        grid_order(space, 0, 500)


# config ---------------------------------------------------------------------------------------------


def test_shipped_tiny_config_loads_and_resolves_its_recipe() -> None:
    path = ROOT / "experiments" / "tiny" / "optuna.yaml"
    cfg = load_search_config(path)
    search, base = yaml.safe_load(path.read_text()), yaml.safe_load((path.parent / "msclip.yaml").read_text())
    assert search["recipe"] == "msclip.yaml"
    t = cfg.train_template
    assert (t.model.policy, t.model.size) == (base["model"]["policy"], base["model"]["size"])  # inherited
    assert t.optim.weight_decay_shared == base["optim"]["weight_decay_shared"]  # inherited
    assert (t.data.source, t.data.heldout_shapes, t.train.epochs, t.eval.nmi_pairs) == ("embedded", 4096, 2, 0)  # overridden inline
    assert (cfg.objective.metric, cfg.objective.direction) == ("heldout/shapes/loss", "minimize")  # the ShareBench metric
    assert cfg.budget == 4_000_000 and cfg.baselines == BASELINES
    assert (cfg.sampler_kind, cfg.pruner_kind) == ("tpe", "median")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"sampler": {"kind": "cmaes"}}, "sampler.kind is 'cmaes'"),
        ({"spaces": {}}, "unknown key 'spaces'"),
        ({"model": {"sise": "tiny"}}, "unknown key 'model.sise'"),
        ({"recipe": "missing.yaml"}, "recipe: missing.yaml does not exist"),
        ({"param_budget": "lots"}, "param_budget: 'lots' is not a parameter count"),
        ({"baselines": ["clip"]}, "must include 'msclip'"),
        ({"n_trials": 2}, "n_trials: 2 is fewer than the 3 baselines"),
        ({"objective": {"kind": "multi"}, "pruner": {"kind": "hyperband"}}, "needs objective.kind: single"),
        ({"space": {"fusion_layers": [0, 2]}}, "space.fusion_layers"),
        ({"space": {"presets": ["msclip-xl"]}}, "space.presets: 'msclip-xl' is not a preset"),
        ({"space": {"sublayer_combos": ["attn+mlp"]}}, "'attn+mlp' is not a sublayer combination"),
        ({"heartbeat": {"interval": 10, "grace_period": 5}}, "grace_period > interval"),
    ],
)
def test_bad_configs_fail_with_the_key_named(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.").replace("+", r"\+")):
        load_search_config(config)


def test_multi_objective_defaults_to_mo_tpe_without_pruning() -> None:
    cfg = load_search_config({"objective": {"kind": "multi"}})
    assert (cfg.sampler_kind, cfg.pruner_kind) == ("tpe", "none")
    assert cfg.objective.names == ["zeroshot/digits/top1", "params"] and cfg.objective.directions == ["maximize", "minimize"]


def test_fusion_layers_outside_the_size_are_rejected() -> None:
    with pytest.raises(PolicyError, match="space.fusion_layers: 12 is outside 1..11"):
        LayoutSpace(LayoutSpaceConfig(fusion_layers=[4, 12]), "tiny")
