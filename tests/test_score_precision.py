"""Every score the bench, the rank check and the searches compare is computed at one precision
(`trainer.evaluation.precision`), whatever precision the caller runs in: held-out loss, the full
evaluation (the discrete search's objective), the supernet scorer (derivation, rank check), the
fine-tune before scoring and the modality-gradient cosines."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nas.scoring import Scorer
from nas.supernet.finetune import finetune_model
from search_spaces import build_model
from trainer.config import OptimConfig
from trainer.data import DataConfig, build_data
from trainer.evaluation import evaluate
from trainer.evaluation.grad_conflict import modality_gradient_cosines
from trainer.evaluation.heldout import held_out_loss, materialize


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    bundle = build_data(DataConfig(source="shapes", num_shapes=100, shapes_zeroshot_per_class=1, max_eval_images=16, heldout_shapes=32), 32, 32)
    model = build_model("msclip-s", "tiny")  # convolutions and BatchNorms as well as the transformer
    return model, bundle, materialize(bundle.heldout, 16)


def output_dtypes(model: nn.Module, run) -> set[torch.dtype]:
    """The dtypes of every floating-point tensor a module of `model` outputs while `run()` runs."""
    seen: set[torch.dtype] = set()

    def record(module, args, output):
        for t in output if isinstance(output, tuple) else (output,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                seen.add(t.dtype)

    handles = [m.register_forward_hook(record) for m in model.modules()]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return seen


def bf16_region(run):
    """`run` inside the bf16 autocast the trainer wraps its training forward passes in."""
    def wrapped():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return run()
    return wrapped


def test_every_scorer_computes_in_fp32_inside_a_bf16_region(setup):
    model, bundle, batches = setup
    images, tokens = batches[0]
    with torch.no_grad():  # the region reaches an unguarded forward: the check below can fail
        assert torch.bfloat16 in output_dtypes(model, bf16_region(lambda: model(images, tokens)))
    groups = {"ffn": list(model.blocks[-1].mlp.parameters())}
    scorers = {
        "held_out_loss": lambda m: held_out_loss(m, batches, "cpu"),
        "evaluate": lambda m: evaluate(m, bundle, "cpu", batch_size=16, nmi_pairs=4, progress=False, heldout_batch_size=16),
        "scorer": lambda m: Scorer(bundle, batches, torch.device("cpu"), calibration=batches[:1], context_length=32).measure(m, recalibrate=True),
        "finetune": lambda m: finetune_model(m, batches[:1], 1e-4, OptimConfig(), torch.device("cpu")),
        "grad_cosines": lambda m: modality_gradient_cosines(m, batches[:1], groups, torch.device("cpu")),
    }
    for name, score in scorers.items():
        mine = copy.deepcopy(model)
        assert output_dtypes(mine, bf16_region(lambda: score(mine))) == {torch.float32}, name


def test_the_search_objective_the_scorer_and_the_bench_loss_agree_whatever_the_callers_precision(setup):
    """`heldout/shapes/loss` (the discrete search's objective), the supernet scorer's `val_loss` (the
    derivation and the rank check) and `held_out_loss` (the bench) on the same batches, called from
    fp32 and from a bf16 region: one value."""
    model, bundle, batches = setup
    scorer = Scorer(bundle, batches, torch.device("cpu"), context_length=32)
    values = []
    for region in (lambda run: run, bf16_region):
        values.append(region(lambda: evaluate(model, bundle, "cpu", batch_size=16, nmi_pairs=0, progress=False, heldout_batch_size=16))()["heldout/shapes/loss"])
        values.append(region(lambda: scorer.measure(model)["val_loss"])())
        values.append(region(lambda: held_out_loss(model, batches, "cpu"))())
    assert len(set(values)) == 1, values


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_scores_are_ieee_fp32_inside_the_trainers_bf16_and_tf32_settings(setup):
    """With TF32 on (as the trainer sets it) and inside a bf16 autocast region, the held-out loss on
    CUDA equals the one computed with autocast and TF32 off, and the settings come back afterwards."""
    model, bundle, batches = setup
    device = torch.device("cuda")
    model = copy.deepcopy(model).to(device)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    reference = held_out_loss(model, batches, device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert held_out_loss(model, batches, device) == reference
            assert output_dtypes(model, lambda: held_out_loss(model, batches, device)) == {torch.float32}
            images, tokens = batches[0]
            with torch.no_grad():
                assert torch.bfloat16 in output_dtypes(model, lambda: model(images.to(device), tokens.to(device)))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        scorer = Scorer(bundle, batches, device, context_length=32)
        assert scorer.measure(model)["val_loss"] == reference
        metrics = evaluate(model, bundle, device, batch_size=16, nmi_pairs=0, progress=False, heldout_batch_size=16)
        assert metrics["heldout/shapes/loss"] == reference
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
