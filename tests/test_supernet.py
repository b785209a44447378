"""The Gumbel supernet: fixed paths equal standalone models, only the sampled path runs, exact
parameter costs, and the mapping between gate choices and policies."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from nas.supernet.gates import GateSample, gate_generator, sample_hard
from nas.supernet.model import GatedSlot, PatchOrStem, Supernet
from search_spaces import PolicyError, build_model, count_params, get_preset, get_size
from search_spaces.gate_space import ON, SHARED_OPTION, SPECIFIC_OPTION, GateSpace

TINY = get_size("tiny")


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    torch.manual_seed(0)
    return Supernet(GateSpace(TINY, early_specialization=True, fusion_layers=(2, 4, 6, 8, 10))).eval()


def _batch(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 1000, (n, TINY.context_length), generator=g)
    tokens[:, 6] = 49407
    return torch.randn(n, 3, TINY.image_size, TINY.image_size, generator=g), tokens


@pytest.mark.parametrize("preset", ["msclip", "share-all", "clip-t768", "msclip-s", "share-last-4"])
def test_fixed_path_equals_the_standalone_model_with_inherited_weights(supernet, preset):
    policy = get_preset(preset, TINY)
    supernet.fix(policy)
    model = build_model(policy, TINY).eval()
    model.load_state_dict(supernet.standalone_state_dict(policy))
    images, tokens = _batch()
    with torch.no_grad():
        ours, theirs = supernet(images, tokens), model(images, tokens)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_unselected_paths_get_no_forward_computation(supernet):
    space = supernet.space
    calls: dict[nn.Module, int] = {}
    options: list[tuple[int, nn.Module, bool]] = []  # (gate, module, runs when the gate is 1)
    for module in supernet.modules():
        if isinstance(module, GatedSlot):
            options += [(module.gate, module.shared, False), (module.gate, module.vision, True), (module.gate, module.text, True)]
        elif isinstance(module, PatchOrStem):
            options += [(module.gate, module.patch, False), (module.gate, module.stem, True)]
    hooks = [m.register_forward_hook(lambda mod, i, o: calls.__setitem__(mod, calls.get(mod, 0) + 1)) for _, m, _ in options]
    adapters = dict(supernet.visual.adapters.items())
    hooks += [m.register_forward_hook(lambda mod, i, o: calls.__setitem__(mod, calls.get(mod, 0) + 1)) for m in adapters.values()]
    try:
        logits = torch.zeros(space.num_gates, 2, requires_grad=True)
        sample = sample_hard(logits, 1.0, gate_generator(0, 5, 1))
        sample.choices[space.es_gate] = 0
        sample.choices[space.fusion_gate(1)], sample.choices[space.fusion_gate(3)] = 1, 0
        supernet.route(sample)
        supernet(*_batch())
    finally:
        for h in hooks:
            h.remove()
    choices = supernet.routing.choices
    for gate, module, when_on in options:
        selected = (choices[gate] == 1) == when_on
        assert (calls.get(module, 0) > 0) == selected, (space.gate_names()[gate], when_on)
    enabled = space.enabled_fusion(choices)
    used = {f"{layer}_{stage}" for stage, layer in enumerate(enabled)}
    assert used and all((calls.get(m, 0) > 0) == (key in used) for key, m in adapters.items())


def test_straight_through_weights_leave_outputs_unchanged_and_reach_the_logits(supernet):
    space = supernet.space
    logits = torch.zeros(space.num_gates, 2, requires_grad=True)
    sample = sample_hard(logits, 2.0, gate_generator(1, 0, 1))
    sample.choices[space.es_gate] = ON
    images, tokens = _batch()
    supernet.route(sample)
    image, text, _ = supernet(images, tokens)
    supernet.route(GateSample(list(sample.choices)))
    with torch.no_grad():
        plain = supernet(images, tokens)
    assert torch.equal(image.detach(), plain[0]) and torch.equal(text.detach(), plain[1])
    (image * text).sum().backward()
    grads = logits.grad.abs().sum(dim=1)
    forced = [space.layer_gate(0, sub) for sub in ("attn", "ffn", "ln1", "ln2")]
    assert all(grads[g] == 0 for g in forced)
    assert (grads > 0).sum() >= space.num_gates - len(forced) - 2


def test_cost_model_is_exact_for_random_policies(supernet):
    space, cost = supernet.space, supernet.cost_model()
    rng = random.Random(0)
    for _ in range(5):
        choices = [rng.randint(0, 1) for _ in range(space.num_gates)]
        assert cost.exact(choices) == count_params(space.to_policy(choices), TINY).total
        one_hot = torch.nn.functional.one_hot(torch.tensor(space.normalize(choices)), 2).float()
        assert cost.expected(one_hot).item() == pytest.approx(cost.exact(choices), abs=1e-3)
    low, high = cost.extremes()
    assert low == count_params("share-all", TINY).total and high > count_params("clip-t768", TINY).total
    probs = torch.full((space.num_gates, 2), 0.5, requires_grad=True)
    cost.expected(probs).backward()
    assert (probs.grad[: space.num_layer_gates, SPECIFIC_OPTION] > 0).all()


def test_choices_and_policies_round_trip(supernet):
    space = supernet.space
    for preset in ("msclip", "msclip-s", "share-attn-only", "msclip-pb"):
        policy = get_preset(preset, TINY)
        assert space.to_policy(space.from_policy(policy)) == policy
    choices = [SHARED_OPTION] * space.num_gates
    choices[space.es_gate] = ON
    policy = space.to_policy(choices)
    assert policy.early_specialization and not policy.layers[0].any_shared
    with pytest.raises(PolicyError, match="text_width"):
        space.from_policy(get_preset("clip", TINY))
    narrow = GateSpace(TINY, early_specialization=False, fusion_layers=(2, 4))
    with pytest.raises(PolicyError, match="early specialization"):
        narrow.from_policy(get_preset("msclip-es", TINY))
    with pytest.raises(PolicyError, match="fusion layers"):
        narrow.from_policy(get_preset("msclip-pb", TINY))
    with pytest.raises(ValueError, match="fusion_layers"):
        GateSpace(TINY, fusion_layers=(4, 2))


def test_gate_logits_are_not_weights_and_sharing_groups_are_right(supernet):
    sharing = supernet.param_sharing()
    assert sharing["blocks.3.attn.shared.in_proj_weight"] == "shared"
    assert sharing["blocks.3.attn.vision.in_proj_weight"] == "vision"
    assert sharing["blocks.3.mlp.text.c_fc.weight"] == "text"
    assert sharing["visual.conv1.stem.proj.weight"] == "vision" and sharing["visual.adapters.4_1.ln.weight"] == "vision"
    assert not any("logit" in n and n != "logit_scale" for n in sharing)
    assert supernet.policy.num_layers == TINY.layers


def test_every_sharing_option_starts_as_the_same_function():
    torch.manual_seed(1)
    fresh = Supernet(GateSpace(TINY, early_specialization=False)).eval()
    images, tokens = _batch()
    outputs = []
    for preset in ("share-all", "clip-t768", "share-last-6"):
        fresh.fix(get_preset(preset, TINY))
        with torch.no_grad():
            outputs.append(fresh(images, tokens))
    for other in outputs[1:]:
        assert torch.equal(outputs[0][0], other[0]) and torch.equal(outputs[0][1], other[1])
    slot = fresh.blocks[3].attn
    assert slot.vision.in_proj_weight is not slot.shared.in_proj_weight
