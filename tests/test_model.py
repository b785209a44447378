import pytest
import torch

from search_spaces import PRESET_NAMES, ParallelBranchSpec, SharingPolicy, build_model, get_preset, get_size
from trainer.data.text import tokenize

TINY = get_size("tiny")


def _inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, TINY.image_size, TINY.image_size, generator=g)
    tokens = tokenize(["a small red circle left of a blue square", "the digit seven"][:batch], TINY.context_length)
    return images, tokens


def test_shared_sublayer_is_one_tensor_in_parameters_and_state_dict():
    torch.manual_seed(0)
    model = build_model("msclip", "tiny")
    keys = model.state_dict().keys()
    assert "blocks.3.attn.shared.in_proj_weight" in keys
    assert not any(k.startswith("blocks.3.attn.vision") or k.startswith("blocks.3.attn.text") for k in keys)
    assert "blocks.3.ln_1.vision.weight" in keys and "blocks.3.ln_1.text.weight" in keys
    params = list(model.parameters())
    assert len({id(p) for p in params}) == len(params)
    assert len(params) == len(list(model.named_parameters(remove_duplicate=False)))
    sd_tensors = [v for k, v in model.state_dict().items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(sd_tensors) == len(params)
    assert sum(p.numel() for p in params) == sum(t.numel() for t in sd_tensors)
    block = model.blocks[3]
    assert block.attn.select("vision") is block.attn.select("text")
    assert block.ln_1.select("vision") is not block.ln_1.select("text")


def test_shared_gradient_is_the_sum_of_both_towers():
    torch.manual_seed(0)
    model = build_model("msclip", "tiny")
    images, tokens = _inputs()
    weight = model.blocks[5].mlp.shared.c_fc.weight

    def grad(image_term: bool, text_term: bool) -> torch.Tensor:
        model.zero_grad()
        loss = torch.zeros(())
        if image_term:
            loss = loss + model.encode_image(images).square().sum()
        if text_term:
            loss = loss + model.encode_text(tokens).square().sum()
        loss.backward()
        return weight.grad.clone()

    g_image, g_text, g_both = grad(True, False), grad(False, True), grad(True, True)
    assert g_image.abs().sum() > 0 and g_text.abs().sum() > 0
    torch.testing.assert_close(g_both, g_image + g_text, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("policy", ["msclip", "share-all", "clip-t768"])
def test_text_is_causal_and_vision_is_bidirectional(policy):
    torch.manual_seed(0)
    model = build_model(policy, "tiny").eval()
    images, tokens = _inputs(1)
    changed = tokens.clone()
    changed[0, 5] = 1000  # a later token
    with torch.no_grad():
        before, after = model.text_layers(tokens), model.text_layers(changed)
        for a, b in zip(before, after):
            torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)
            assert (a[:, 5:] - b[:, 5:]).abs().max() > 1e-4
        img2 = images.clone()
        img2[..., -8:, -8:] += 1.0  # the last patch
        v1, v2 = model.image_layers(images)[0], model.image_layers(img2)[0]
        assert (v1[:, :-1] - v2[:, :-1]).abs().max() > 1e-4  # earlier tokens see the last patch


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model = build_model(name, "tiny")
    images, tokens = _inputs()
    img, txt, scale = model(images, tokens)
    assert img.shape == txt.shape == (2, TINY.embed_dim)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(2))
    assert scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    (scale * img @ txt.T).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads), "every parameter takes part in the forward pass"


def test_early_specialization_and_parallel_branch_layers():
    model = build_model("msclip-s", "tiny").eval()
    images, tokens = _inputs()
    with torch.no_grad():
        assert len(model.image_layers(images)) == 11 and len(model.text_layers(tokens)) == 12
    assert not hasattr(model.blocks[0].attn, "vision") and hasattr(model.blocks[0].attn, "text")
    assert sorted(model.visual.adapters.keys(), key=int) == ["2", "4", "6", "8", "10"]
    no_dw = SharingPolicy(
        get_preset("msclip", "tiny").layers, parallel_branch=ParallelBranchSpec((1, 5, 9), (4, 2, 2), dwconv=False)
    )
    plain = build_model(no_dw, "tiny")
    assert not any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in plain.modules())
    img, _, _ = plain(images, tokens)
    assert torch.isfinite(img).all()


def test_grad_checkpointing_gives_the_same_gradients():
    images, tokens = _inputs()
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = build_model("share-last-6", "tiny")
        model.set_grad_checkpointing(ckpt)
        img, txt, scale = model(images, tokens)
        (scale * img @ txt.T).trace().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])
