"""The symmetric InfoNCE loss, its multi-process form and accumulation over micro-batches."""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from trainer.distributed import World
from trainer.loss import contrastive_loss


def _features(n: int, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    text = F.normalize(torch.randn(n, d, generator=g), dim=-1)
    return image, text


def test_matches_open_clip_value_and_gradients():
    from open_clip.loss import ClipLoss  # imported here: the processes spawned below re-import this module

    image, text = _features(6)
    scale = torch.tensor(math.log(1 / 0.07)).exp()
    ours_i, ours_t = image.clone().requires_grad_(), text.clone().requires_grad_()
    ref_i, ref_t = image.clone().requires_grad_(), text.clone().requires_grad_()
    ours = contrastive_loss(ours_i, ours_t, scale)
    ref = ClipLoss()(ref_i, ref_t, scale)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(ours_i.grad, ref_i.grad)
    torch.testing.assert_close(ours_t.grad, ref_t.grad)


def test_hand_computed_two_pairs():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = torch.tensor(2.0)
    logits = 2.0 * image @ text.T  # [[2, 1.2], [0, 1.6]]
    row = -(torch.log_softmax(logits, 1).diagonal()).mean()
    col = -(torch.log_softmax(logits.T, 1).diagonal()).mean()
    assert contrastive_loss(image, text, scale).item() == pytest.approx(((row + col) / 2).item(), rel=1e-6)


def test_aligned_pairs_with_large_scale_give_small_loss_and_symmetry():
    image, text = _features(8, d=16)
    assert contrastive_loss(image, image, torch.tensor(100.0)).item() < 1e-3
    loss = contrastive_loss(image, text, torch.tensor(10.0))
    assert loss.item() == pytest.approx(contrastive_loss(text, image, torch.tensor(10.0)).item(), rel=1e-6)
    assert loss.item() > 1.0  # random pairs: close to log(8)


SIZES = [4, 6]  # unequal: images that failed to decode leave ranks with fewer rows
SCALE = 5.0


def _loss_worker(rank: int, init_file: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    image, text = _features(sum(SIZES))
    start = sum(SIZES[:rank])
    rows = slice(start, start + SIZES[rank])
    local_image, local_text = image[rows].clone().requires_grad_(), text[rows].clone().requires_grad_()
    scale = torch.tensor(SCALE, requires_grad=True)
    loss = contrastive_loss(local_image, local_text, scale, World(rank=rank, world_size=2))
    loss.backward()
    torch.save({"loss": loss.detach(), "image": local_image.grad, "text": local_text.grad, "scale": scale.grad}, f"{results}.{rank}")
    dist.destroy_process_group()


@pytest.mark.integration  # two gloo processes: make test-integration
def test_two_processes_score_their_rows_against_the_gathered_rows_like_one_global_batch(tmp_path):
    """Two gloo processes, each holding its own rows, run the loss through the real gather: the mean of
    their losses is the one-process loss over the concatenated batch, and the gradient each process
    gets for its own rows, averaged as DDP averages, is the one-process gradient of those rows (the
    gather passes back the other process's gradient, as open_clip's gather_with_grad does)."""
    mp.spawn(_loss_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2)
    image, text = _features(sum(SIZES))
    image.requires_grad_(), text.requires_grad_()
    scale = torch.tensor(SCALE, requires_grad=True)
    full = contrastive_loss(image, text, scale)
    full.backward()
    ranks = [torch.load(tmp_path / f"out.{rank}", weights_only=True) for rank in range(2)]
    mean = (ranks[0]["loss"] + ranks[1]["loss"]).item() / 2
    assert mean == pytest.approx(full.item(), rel=1e-6), "the processes' mean loss is not the one-process loss"
    torch.testing.assert_close(torch.cat([r["image"] for r in ranks]) / 2, image.grad, msg=lambda m: f"image gradients: {m}")
    torch.testing.assert_close(torch.cat([r["text"] for r in ranks]) / 2, text.grad, msg=lambda m: f"text gradients: {m}")
    torch.testing.assert_close((ranks[0]["scale"] + ranks[1]["scale"]) / 2, scale.grad, msg=lambda m: f"logit scale gradient: {m}")


def test_accumulation_keeps_the_global_batch_objective(tmp_path):
    """accum_steps=2 recomputes each half against the cached other half: same losses as one batch."""
    from trainer.config import TrainConfig
    from trainer.loop import train
    from trainer.metrics import read_metrics
    from trainer.typed_config import load_config

    def run(accum: int) -> list[float]:
        cfg = load_config(
            {
                "model": {"policy": "msclip", "size": "tiny"},
                "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2},
                "optim": {"lr": 1e-3, "warmup_epochs": None, "warmup_steps": 2},
                "train": {"steps": 4, "epochs": None, "batch_size": 16, "accum_steps": accum, "log_every": 1,
                          "checkpoint_every": None, "progress": False, "num_threads": 1},
                "eval": {"every_epochs": None, "nmi_pairs": 0},
            },
            TrainConfig,
        )
        train(cfg, tmp_path / f"accum{accum}")
        return [r["train/loss"] for r in read_metrics(tmp_path / f"accum{accum}") if "train/loss" in r]

    whole, accumulated = run(1), run(2)
    assert len(whole) == len(accumulated) == 4
    assert max(abs(a - b) for a, b in zip(whole, accumulated)) < 1e-5
    assert whole[-1] < whole[0]


def test_bf16_autocast_and_activation_checkpointing_train(tmp_path):
    """The mixed-precision path (bf16 autocast, fp32 loss) and activation checkpointing run and
    start from the fp32 loss."""
    from trainer.config import TrainConfig
    from trainer.loop import train
    from trainer.metrics import read_metrics
    from trainer.typed_config import load_config

    def first_losses(name: str, **train_section) -> list[float]:
        cfg = load_config(
            {
                "model": {"policy": "msclip", "size": "tiny"},
                "data": {"source": "shapes", "num_shapes": 200, "shapes_zeroshot_per_class": 2},
                "train": {"steps": 2, "epochs": None, "batch_size": 16, "log_every": 1, "checkpoint_every": None,
                          "progress": False, "num_threads": 1, **train_section},
                "eval": {"every_epochs": None, "nmi_pairs": 0},
            },
            TrainConfig,
        )
        train(cfg, tmp_path / name)
        return [r["train/loss"] for r in read_metrics(tmp_path / name) if "train/loss" in r]

    fp32 = first_losses("fp32")
    bf16 = first_losses("bf16", precision="bf16", grad_checkpointing=True)
    assert all(math.isfinite(x) for x in bf16) and len(bf16) == 2
    assert 0 < abs(bf16[0] - fp32[0]) < 0.05  # bf16 rounding shows, the model is the same
