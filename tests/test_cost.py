"""The cost objectives: FLOPs counted by torch's flop counter agree with a hand count, and the
latency is the median of the timed steps (a scripted clock, so no timing decides the outcome)."""
from __future__ import annotations

import itertools

import pytest
import torch

from search_spaces import build_model, get_preset, get_size
from trainer.evaluation.cost import count_flops, flop_counter, measure_latency

TINY = get_size("tiny")


def hand_layer_flops(tokens: int, width: int, mlp_ratio: float) -> int:
    """One pre-LN block, multiply-add = 2 FLOPs: QKV (3w^2), attention scores and mixing (2 L w
    each), output projection (w^2), FFN (2 * ratio * w^2); norms, GELU and residuals not counted."""
    linear = 2 * tokens * width * (3 * width + width + 2 * int(mlp_ratio * width))
    attention = 2 * 2 * tokens * tokens * width
    return linear + attention


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return build_model(get_preset("clip", "tiny"), "tiny").eval()


def test_one_clip_layer_matches_the_hand_count(clip) -> None:
    patches = TINY.grid ** 2 + 1
    text_width = TINY.narrow_text_width
    block = clip.blocks[0]
    for modality, shape in (("vision", (1, patches, TINY.width)), ("text", (1, TINY.context_length, text_width))):
        with torch.no_grad(), flop_counter() as counter:
            block(torch.randn(shape), modality)
        assert counter.get_total_flops() == hand_layer_flops(shape[1], shape[2], TINY.mlp_ratio), modality
    assert hand_layer_flops(patches, TINY.width, TINY.mlp_ratio) == 1_745_152  # 17 tokens, width 64


def test_the_pair_count_is_the_layers_plus_the_embedding_and_projections(clip) -> None:
    layers = TINY.layers * (hand_layer_flops(TINY.grid ** 2 + 1, TINY.width, TINY.mlp_ratio)
                            + hand_layer_flops(TINY.context_length, TINY.narrow_text_width, TINY.mlp_ratio))
    patch_embedding = 2 * TINY.grid ** 2 * TINY.width * 3 * TINY.patch_size ** 2
    projections = 2 * TINY.embed_dim * (TINY.width + TINY.narrow_text_width)
    assert count_flops(clip, TINY.image_size, TINY.context_length) == layers + patch_embedding + projections


def test_sharing_does_not_change_the_flops_of_equal_widths() -> None:
    """Sharing saves parameters, not compute: msclip and clip-t768 run the same operations."""
    counts = [count_flops(build_model(get_preset(name, "tiny"), "tiny"), TINY.image_size, TINY.context_length)
              for name in ("msclip", "clip-t768")]
    assert counts[0] == counts[1] > count_flops(build_model(get_preset("clip", "tiny"), "tiny"), TINY.image_size, TINY.context_length)


def test_latency_is_the_median_of_the_timed_steps_after_warm_up(clip) -> None:
    # (start, end) per step: the warm-up step takes 100 s, then 3, 1, 50, 2, 4 s.
    durations = [100.0, 3.0, 1.0, 50.0, 2.0, 4.0]
    ticks = itertools.chain.from_iterable((10.0 * i, 10.0 * i + d) for i, d in enumerate(durations))
    latency = measure_latency(clip, TINY.image_size, TINY.context_length, batch=2, device="cpu", steps=5, warmup=1,
                              clock=lambda: next(ticks))
    assert latency.times_s == (3.0, 1.0, 50.0, 2.0, 4.0)
    assert latency.median_s == 3.0  # not the mean (12.0), and the warm-up step is left out
    assert (latency.batch, latency.precision, latency.steps) == (2, "fp32", 5) and latency.device.startswith("cpu:")


def test_latency_refuses_a_step_count_of_zero(clip) -> None:
    with pytest.raises(ValueError, match="steps >= 1"):
        measure_latency(clip, TINY.image_size, TINY.context_length, batch=1, device="cpu", steps=0)
