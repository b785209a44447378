"""Weight-decay groups (shared 0.2, specific 0.05, none for biases/norms/embeddings/logit scale) and the schedule."""
from __future__ import annotations

import pytest
import torch

from search_spaces import build_model
from trainer.config import OptimConfig
from trainer.optim import build_optimizer, lr_at, set_lr, warmup_steps, weight_decays


@pytest.fixture(scope="module")
def msclip():
    torch.manual_seed(0)
    return build_model("msclip", "tiny")


def test_msclip_decay_per_tensor(msclip):
    decay = weight_decays(msclip, OptimConfig())
    assert set(decay) == {n for n, _ in msclip.named_parameters()}
    expected = {
        "blocks.5.attn.shared.in_proj_weight": 0.2,
        "blocks.5.attn.shared.out_proj.weight": 0.2,
        "blocks.5.mlp.shared.c_fc.weight": 0.2,
        "blocks.5.mlp.shared.c_proj.weight": 0.2,
        "visual.conv1.weight": 0.05,
        "visual.proj": 0.05,
        "text.text_projection": 0.05,
        "blocks.5.attn.shared.in_proj_bias": 0.0,
        "blocks.5.mlp.shared.c_fc.bias": 0.0,
        "blocks.5.ln_1.vision.weight": 0.0,
        "blocks.5.ln_2.text.bias": 0.0,
        "visual.ln_pre.weight": 0.0,
        "text.ln_final.weight": 0.0,
        "visual.class_embedding": 0.0,
        "visual.positional_embedding": 0.0,
        "text.positional_embedding": 0.0,
        "text.token_embedding.weight": 0.0,
        "logit_scale": 0.0,
    }
    assert {k: decay[k] for k in expected} == expected
    # Exactly the shared 2-D transformer weights decay at 0.2: 4 per layer.
    assert sorted(n for n, d in decay.items() if d == 0.2) == sorted(
        f"blocks.{i}.{m}" for i in range(12) for m in ("attn.shared.in_proj_weight", "attn.shared.out_proj.weight", "mlp.shared.c_fc.weight", "mlp.shared.c_proj.weight")
    )
    assert sorted(n for n, d in decay.items() if d == 0.05) == ["text.text_projection", "visual.conv1.weight", "visual.proj"]


def test_clip_has_no_shared_decay_and_batchnorm_is_not_decayed():
    clip = weight_decays(build_model("clip", "tiny"), OptimConfig())
    assert clip["blocks.0.attn.vision.in_proj_weight"] == 0.05 and clip["blocks.0.mlp.text.c_fc.weight"] == 0.05
    assert 0.2 not in clip.values()
    msclip_s = weight_decays(build_model("msclip-s", "tiny"), OptimConfig())
    assert msclip_s["visual.stem.stem.0.0.weight"] == 0.05  # conv weight
    assert msclip_s["visual.stem.stem.0.1.weight"] == 0.0 and msclip_s["visual.stem.stem.0.1.bias"] == 0.0  # BatchNorm


def test_no_decay_categories_are_configurable(msclip):
    decay = weight_decays(msclip, OptimConfig(no_decay=["bias"], weight_decay_shared=0.3, weight_decay_specific=0.01))
    assert decay["logit_scale"] == 0.3  # the logit scale counts as shared
    assert decay["blocks.5.ln_1.vision.weight"] == 0.01
    assert decay["text.token_embedding.weight"] == 0.01
    assert decay["blocks.5.attn.shared.in_proj_bias"] == 0.0


def test_optimizer_sees_every_tensor_once_with_its_decay(msclip):
    cfg = OptimConfig()
    optimizer = build_optimizer(msclip, cfg)
    decay = weight_decays(msclip, cfg)
    names = {id(p): n for n, p in msclip.named_parameters()}
    seen = [(names[id(p)], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]]
    assert len(seen) == len(names) == len({n for n, _ in seen})
    assert all(decay[n] == wd for n, wd in seen)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.2, 0.05, 0.0]
    assert optimizer.defaults["betas"] == (0.9, 0.98) and optimizer.defaults["eps"] == 1e-6


def test_warmup_then_cosine():
    base, final, warm, total = 1.6e-3, 1.6e-4, 10, 110
    lrs = [lr_at(s, base, final, warm, total) for s in range(total + 1)]
    # warm-up, base * (step + 1) / 10: 1.6e-3 * 1/10, * 5/10, * 10/10
    assert [lrs[0], lrs[4], lrs[9]] == pytest.approx([1.6e-4, 8.0e-4, 1.6e-3])
    assert all(b > a for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(b <= a for a, b in zip(lrs[10:], lrs[11:]))
    # cosine over steps 10..110, progress (step - 10) / 100; lr = 1.6e-4 + c * 1.44e-3, c = (1 + cos(pi * progress)) / 2:
    # step 10: c = 1 -> 1.6e-3; step 35: c = (1 + 0.70711) / 2 = 0.85355 -> 1.38912e-3; step 60: c = 0.5 -> 8.8e-4;
    # step 85: c = (1 - 0.70711) / 2 = 0.14645 -> 3.70883e-4; step 110: c = 0 -> 1.6e-4 (the floor)
    assert [lrs[10], lrs[35], lrs[60], lrs[85], lrs[110]] == pytest.approx([1.6e-3, 1.38912e-3, 8.8e-4, 3.70883e-4, 1.6e-4], rel=1e-5)
    assert lr_at(200, base, final, warm, total) == pytest.approx(1.6e-4)  # past the end it stays at the floor
    # no warm-up, 10 steps: step 5 is half way, c = 0.5 -> 1.6e-4 + 0.5 * 1.44e-3 = 8.8e-4
    assert lr_at(5, base, final, 0, 10) == pytest.approx(8.8e-4)


def test_warmup_length_from_epochs_or_steps():
    assert warmup_steps(OptimConfig(warmup_epochs=5.0), steps_per_epoch=100, total_steps=3200) == 500
    assert warmup_steps(OptimConfig(warmup_epochs=0.5), steps_per_epoch=30, total_steps=300) == 15
    assert warmup_steps(OptimConfig(warmup_epochs=None, warmup_steps=40), steps_per_epoch=30, total_steps=300) == 40
    assert warmup_steps(OptimConfig(warmup_epochs=5.0), steps_per_epoch=30, total_steps=60) == 60
    assert warmup_steps(OptimConfig(warmup_epochs=None), steps_per_epoch=30, total_steps=60) == 0


def three_adamw_steps(implementation: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The tiny msclip's parameters before and after 3 AdamW steps (all three decay groups, a changing LR)."""
    torch.manual_seed(0)
    model = build_model("msclip", "tiny")
    optimizer = build_optimizer(model, OptimConfig(implementation=implementation))
    assert optimizer.defaults["fused"] == (implementation == "fused") and optimizer.defaults["foreach"] == (implementation == "foreach")
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.manual_seed(1)
    size = model.size
    images, tokens = torch.randn(4, 3, size.image_size, size.image_size), torch.randint(1, 100, (4, size.context_length))
    for step in range(3):
        image, text, scale = model(images, tokens)
        (scale * image @ text.T).logsumexp(1).mean().backward()
        set_lr(optimizer, LR_STEP * (step + 1))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return start, {n: p.detach() for n, p in model.named_parameters()}


LR_STEP = 1e-3


def test_foreach_adamw_takes_exactly_the_steps_of_the_per_parameter_loop():
    start, loop = three_adamw_steps("for-loop")
    _, foreach = three_adamw_steps("foreach")
    assert sum(not torch.equal(loop[n], start[n]) for n in loop) > len(loop) / 2
    assert all(torch.equal(foreach[n], loop[n]) for n in loop)


def test_fused_adamw_takes_the_steps_of_the_per_parameter_loop():
    """Equal to rounding, except where the gradient itself is rounding noise: attention's key bias
    (softmax ignores a shift shared by all keys, so its true gradient is 0) moves by about
    lr x sign(noise) either way, and there the fused kernel's order of operations shows; it still
    stays within 1% of the LR summed over the steps."""
    _, loop = three_adamw_steps("for-loop")
    _, fused = three_adamw_steps("fused")
    for name in loop:
        if name.endswith("attn.shared.in_proj_bias"):
            q, k, v = fused[name].chunk(3)
            q0, k0, v0 = loop[name].chunk(3)
            torch.testing.assert_close((q, v), (q0, v0), rtol=1e-5, atol=1e-6, msg=name)
            assert (k - k0).abs().max() < 0.01 * 6 * LR_STEP, name
        else:
            torch.testing.assert_close(fused[name], loop[name], rtol=1e-5, atol=1e-6, msg=name)


def test_auto_adamw_is_the_fused_kernel(msclip):
    assert build_optimizer(msclip, OptimConfig()).defaults["fused"]
