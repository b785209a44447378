"""Each supernet option does what it claims: sandwich paths, held paths, soft LayerNorm gates, weight
entanglement, decoupled training with an evolutionary derivation, and resuming a killed search."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from nas.supernet.diagnostics import shared_path
from nas.supernet.gates import GateSample, probabilities
from nas.supernet.model import Supernet
from nas.supernet.search import GumbelSearch, run_gumbel_search
from search_spaces import SUBLAYERS, SharingPolicy, build_model, count_params, get_preset, get_size
from search_spaces.gate_space import SPECIFIC_OPTION, GateSpace
from trainer.distributed import World

from tests.test_gumbel_search import short_config

TINY = get_size("tiny")
NO_EVAL = {"nmi_pairs": 0, "every_epochs": None}


def _batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 1000, (n, TINY.context_length), generator=g)
    tokens[:, 6] = 49407
    return torch.randn(n, 3, TINY.image_size, TINY.image_size, generator=g), tokens


def _search(tmp_path, **sections) -> GumbelSearch:
    return GumbelSearch(short_config(eval=NO_EVAL, **sections), tmp_path / "run", World())


def test_sandwich_steps_visit_both_extreme_paths(tmp_path):
    search = _search(tmp_path, search={"sandwich": True})
    space = search.space
    for step in (0, 7):
        paths = search._weight_paths(step)
        assert len(paths) == 4
        assert paths[2] == shared_path(space).choices and paths[3] == [SPECIFIC_OPTION] * space.num_gates
        assert paths[0] == [1 - c for c in paths[1]]  # the fair pair is still there
    plain = _search(tmp_path / "plain")
    assert len(plain._weight_paths(0)) == 2


def test_paths_are_held_for_path_every_steps(tmp_path):
    search = _search(tmp_path, search={"path_every": 4})
    paths = [search._weight_paths(step)[0] for step in range(8)]
    assert all(p == paths[0] for p in paths[:4]) and all(p == paths[4] for p in paths[4:])
    assert paths[0] != paths[4]


def _count_calls(modules):
    calls = {id(m): 0 for m in modules}
    hooks = [m.register_forward_hook(lambda mod, args, out: calls.__setitem__(id(mod), calls[id(mod)] + 1)) for m in modules]
    return calls, hooks


def test_soft_layernorm_gates_run_both_options_and_give_their_logits_a_gradient(tmp_path):
    search = _search(tmp_path, search={"ln_gates": "soft", "warmup_epochs": 0})
    space, supernet = search.space, search.supernet
    ln, attn = supernet.blocks[3].ln_1, supernet.blocks[3].attn
    calls, hooks = _count_calls([ln.shared, ln.vision, attn.shared, attn.vision])
    with torch.no_grad():
        search.logits[space.layer_gate(3, "attn")] = torch.tensor([5.0, -5.0])  # attn: hard, shared
        ln.vision.weight.mul_(1.5)  # tied at init, the options only differ once trained
    images, tokens = _batch()
    supernet.route(GateSample([0] * space.num_gates), probabilities(search.logits), search.soft_gates)
    image, text, scale = supernet(images, tokens)
    for h in hooks:
        h.remove()
    assert calls[id(ln.shared)] >= 1 and calls[id(ln.vision)] >= 1  # both LN options ran
    assert calls[id(attn.shared)] >= 1 and calls[id(attn.vision)] == 0  # attention stayed hard
    (image.sum() + text.sum()).backward()
    grad = search.logits.grad
    ln_gate, attn_gate = space.layer_gate(3, "ln1"), space.layer_gate(3, "attn")
    assert grad[ln_gate].abs().sum() > 0 and grad[attn_gate].abs().sum() == 0
    # a fixed policy (scoring, export) runs hard LayerNorms again
    supernet.fix(get_preset("msclip", TINY))
    assert supernet.routing.soft_gates == frozenset()


def test_entangled_specific_modules_start_equal_to_the_shared_one_and_fold_into_a_plain_model():
    torch.manual_seed(0)
    supernet = Supernet(GateSpace(TINY, early_specialization=True, fusion_layers=(2, 4, 6, 8, 10)), entangle=True).eval()
    images, tokens = _batch()
    outputs = []
    for preset in ("share-all", "clip-t768"):
        supernet.fix(get_preset(preset, TINY))
        with torch.no_grad():
            outputs.append(supernet(images, tokens))
    assert torch.allclose(outputs[0][0], outputs[1][0], atol=1e-6) and torch.allclose(outputs[0][1], outputs[1][1], atol=1e-6)
    slot = supernet.blocks[2].mlp
    assert float(slot.vision.c_fc.weight.detach().abs().sum()) == 0.0  # the delta, not a copy
    with torch.no_grad():  # training moves the deltas; folding must follow them
        for p in supernet.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    for preset in ("msclip", "msclip-s", "share-last-4"):
        policy = get_preset(preset, TINY)
        supernet.fix(policy)
        model = build_model(policy, TINY).eval()
        model.load_state_dict(supernet.standalone_state_dict(policy), strict=True)
        with torch.no_grad():
            ours, theirs = supernet(images, tokens), model(images, tokens)
        assert torch.allclose(ours[0], theirs[0], atol=1e-5) and torch.allclose(ours[1], theirs[1], atol=1e-5)
        assert sum(p.numel() for p in model.parameters()) == count_params(policy, TINY).total


def test_decoupled_search_trains_no_gates_and_evolves_a_policy_within_the_budget(tmp_path):
    budget = count_params("msclip", "tiny").total + 20_000
    cfg = short_config(
        eval=NO_EVAL, search={"mode": "decoupled", "budget": budget},
        derive={"method": "evolution", "population": 6, "generations": 2, "batch_size": 16, "bn_recalibration_batches": 1},
    )
    result = run_gumbel_search(cfg, tmp_path / "run", retrain=False)
    gates = json.loads((tmp_path / "run" / "gates.json").read_text())["gates"]
    assert all(g["logits"] == [0.0, 0.0] for g in gates.values())
    candidates = result.arch.provenance["candidates"]
    assert len(candidates) > 6 and all(c["params"] <= budget for c in candidates)
    assert any(c["source"].startswith("gen") for c in candidates)
    assert result.arch.params.total <= budget
    assert result.arch.provenance["selection"]["method"] == "evolution"


def test_decoupled_mode_needs_the_evolutionary_derivation():
    from trainer.typed_config import ConfigError

    with pytest.raises(ConfigError, match="derive.method: evolution"):
        short_config(search={"mode": "decoupled"})


def test_a_killed_search_resumes_to_the_same_gates_and_weights(tmp_path, monkeypatch):
    cfg = short_config(eval=NO_EVAL, train={"checkpoint_every": 4})
    whole = run_gumbel_search(cfg, tmp_path / "whole", retrain=False)

    original = GumbelSearch.weight_step

    def dies_at_step_6(self, images, tokens, step):
        if step == 6:
            raise KeyboardInterrupt
        return original(self, images, tokens, step)

    monkeypatch.setattr(GumbelSearch, "weight_step", dies_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        run_gumbel_search(cfg, tmp_path / "killed", retrain=False)
    assert torch.load(tmp_path / "killed" / "search_state.pt", weights_only=True)["step"] == 4
    monkeypatch.setattr(GumbelSearch, "weight_step", original)
    resumed = run_gumbel_search(cfg, tmp_path / "killed", retrain=False, resume=True)
    gates = [json.loads((tmp_path / run / "gates.json").read_text())["gates"] for run in ("whole", "killed")]
    assert gates[0] == gates[1]
    weights = [load_file(str(tmp_path / run / "supernet.safetensors")) for run in ("whole", "killed")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert resumed.arch.policy == whole.arch.policy
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated metric lines after the resume


def test_resume_refuses_a_directory_without_a_search(tmp_path):
    from trainer.typed_config import ConfigError

    with pytest.raises(ConfigError, match="no search to resume"):
        run_gumbel_search(short_config(eval=NO_EVAL), tmp_path / "nothing", resume=True)


def _conflict_config(budget):
    from nas.conflict.config import ConflictConfig
    from trainer.typed_config import load_config

    return load_config({
        "size": "tiny",
        "data": {"source": "shapes", "num_shapes": 120, "shapes_zeroshot_per_class": 2, "max_eval_images": 20},
        "optim": {"lr": 5e-4, "warmup_epochs": None, "warmup_steps": 1},
        "train": {"epochs": None, "steps": 3, "batch_size": 16, "num_threads": 1, "progress": False, "checkpoint_every": None},
        "eval": NO_EVAL,
        "conflict": {"batches": 2, "batch_size": 16, "budget": budget},
    }, ConflictConfig)


def test_the_conflict_search_makes_the_most_conflicting_sublayers_specific_within_the_budget(tmp_path):
    from nas.conflict.search import conflict_policy, run_conflict_search

    share_all = count_params("share-all", "tiny").total
    budget = share_all + 40_000
    record = run_conflict_search(_conflict_config(budget), tmp_path / "c")
    cosines = json.loads((tmp_path / "c" / "conflict.json").read_text())["cosines"]
    assert len(cosines) == 48 and all(-1.0 <= v <= 1.0 for v in cosines.values())
    assert list(cosines.values()) == sorted(cosines.values())  # most conflicting first
    assert share_all < record.params.total <= budget
    policy = record.policy
    specific = [f"L{i:02d}.{sub}" for i, layer in enumerate(policy.layers) for sub in SUBLAYERS if not layer.is_shared(sub)]
    from nas.conflict.search import Conflicts

    conflicts = Conflicts(cosines, 0.0)
    for name in set(cosines) - set(specific):  # greedy to the end: nothing else fits
        i, sub = int(name[1:3]), name[4:]
        layers = list(policy.layers)
        layers[i] = dataclasses.replace(layers[i], **{sub: "specific"})
        assert count_params(SharingPolicy(tuple(layers)), "tiny").total > budget
    # a looser budget makes at least as many sublayers specific, and the proxy prefers conflicting ones
    looser = conflict_policy(conflicts, _conflict_config(share_all + 400_000))
    assert sum(not l.is_shared(s) for l in looser.layers for s in ("attn", "ffn", "ln1", "ln2")) >= len(specific)
    assert conflicts.score(get_preset("share-all", TINY)) == 0.0
    # rerunning reuses the measured cosines instead of training again
    again = run_conflict_search(_conflict_config(budget), tmp_path / "c")
    assert again.policy == record.policy


def test_a_fine_tune_moves_the_inherited_weights_and_lowers_the_loss_it_trains_on():
    from nas.scoring import held_out_loss
    from nas.supernet.finetune import finetune_model
    from trainer.config import OptimConfig

    torch.manual_seed(0)
    model = build_model("msclip", TINY)
    batches = [_batch(8)] * 5
    before = held_out_loss(model.eval(), batches, torch.device("cpu"))
    weight = model.blocks[4].attn.shared.in_proj_weight.detach().clone()
    finetune_model(model, batches, 1e-3, OptimConfig(), torch.device("cpu"))
    assert not torch.equal(weight, model.blocks[4].attn.shared.in_proj_weight)
    assert held_out_loss(model, batches, torch.device("cpu")) < before


def test_few_shot_children_start_from_the_parent_and_fix_their_split_gate(tmp_path, monkeypatch):
    cfg = short_config(eval=NO_EVAL, search={"few_shot_gate": "es", "few_shot_epochs": 0.4}, train={"steps": 8})
    seen: list[tuple[dict, int, list[list[int]], dict]] = []
    original = GumbelSearch.weight_step

    def spy(self, images, tokens, step):
        if step == self.split_step:  # the first step of each child: its weights before training
            seen.append((dict(self.force), step, self._weight_paths(step), {k: v.clone() for k, v in self.supernet.state_dict().items()}))
        return original(self, images, tokens, step)

    monkeypatch.setattr(GumbelSearch, "weight_step", spy)
    result = run_gumbel_search(cfg, tmp_path / "fs", retrain=False)
    run = tmp_path / "fs"
    parent = torch.load(run / "parent_state.pt", weights_only=True)["supernet"]
    es = GumbelSearch(cfg, tmp_path / "probe", World()).space.es_gate
    assert [s[0] for s in seen] == [{es: 0}, {es: 1}]
    for force, _, paths, weights in seen:
        assert all(path[es] == force[es] for path in paths)
        assert all(torch.equal(weights[k], parent[k]) for k in parent)
    children = [load_file(str(run / f"supernet.es={v}.safetensors")) for v in (0, 1)]
    assert any(not torch.equal(children[0][k], children[1][k]) for k in children[0])
    gates = json.loads((run / "gates.json").read_text())
    assert gates["few_shot"]["files"] == {"0": "supernet.es=0.safetensors", "1": "supernet.es=1.safetensors"}
    sources = [c["source"] for c in result.arch.provenance["candidates"]]
    assert any(s.startswith("es=0:") for s in sources) and any(s.startswith("es=1:") for s in sources)
    from nas.supernet.rundir import weights_file

    space = GumbelSearch(cfg, tmp_path / "probe2", World()).space
    assert weights_file(run, get_preset("msclip-s", TINY), space).name == "supernet.es=1.safetensors"
    assert weights_file(run, get_preset("msclip", TINY), space).name == "supernet.es=0.safetensors"


def test_a_few_shot_search_killed_in_its_second_child_resumes_to_the_same_result(tmp_path, monkeypatch):
    cfg = short_config(eval=NO_EVAL, search={"few_shot_gate": "es", "few_shot_epochs": 0.4}, train={"steps": 8, "checkpoint_every": 2})
    whole = run_gumbel_search(cfg, tmp_path / "whole", retrain=False)
    original = GumbelSearch.weight_step

    def dies_in_child_1(self, images, tokens, step):
        if self.force and list(self.force.values()) == [1] and step == 7:
            raise KeyboardInterrupt
        return original(self, images, tokens, step)

    monkeypatch.setattr(GumbelSearch, "weight_step", dies_in_child_1)
    with pytest.raises(KeyboardInterrupt):
        run_gumbel_search(cfg, tmp_path / "killed", retrain=False)
    monkeypatch.setattr(GumbelSearch, "weight_step", original)
    resumed = run_gumbel_search(cfg, tmp_path / "killed", retrain=False, resume=True)
    for v in (0, 1):
        a, b = (load_file(str(tmp_path / run / f"supernet.es={v}.safetensors")) for run in ("whole", "killed"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.arch.policy == whole.arch.policy


def test_derivation_can_fine_tune_each_candidate_before_scoring_it(tmp_path):
    cfg = short_config(eval=NO_EVAL, derive={"finetune_steps": 2, "samples": 2, "batch_size": 16, "bn_recalibration_batches": 1})
    result = run_gumbel_search(cfg, tmp_path / "run", retrain=False)
    candidates = result.arch.provenance["candidates"]
    assert all("inherited_arch_val_loss" in c for c in candidates)
    assert all(c["arch_val_loss"] != c["inherited_arch_val_loss"] for c in candidates)  # the fine-tune moved every candidate
    assert result.arch.provenance["selection"]["finetune_steps"] == 2
    assert candidates[0]["arch_val_loss"] == min(c["arch_val_loss"] for c in candidates if c["within_budget"])
