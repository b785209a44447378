"""Evaluation metrics against values worked out by hand on tiny inputs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from trainer.data.tasks import LinearProbeTask, PairSet, ZeroShotTask
from trainer.data.text import tokenize
from trainer.evaluation import (
    evaluate,
    layerwise_nmi,
    linear_probe,
    modality_nmi,
    recall_at_k,
    retrieval_recall,
    zero_shot_accuracy,
    zero_shot_classifier,
)

CONTEXT = 8
WORDS = ("cat", "dog", "car", "tree", "boat", "bird", "photo")  # one BPE token each; axis i of the toy embedding
FAR = 1000.0  # where the toy text layers put padding tokens: including them would change every NMI


class ToyCLIP(nn.Module):
    """Deterministic stand-in for SharedCLIP with known answers.

    Text embedding: a bag of words over WORDS (axis i set when WORDS[i] occurs). Image embedding:
    the flattened image. Layer outputs (width 2) ignore the input values and follow fixed layouts:
    vision runs 2 layers, text 3 (as with early specialization), paired from the end as
    (separable, modality-independent); text layer 0 is all zeros and must stay unpaired.
    """

    def __init__(self, text_width: int = 2) -> None:
        super().__init__()
        self.size = SimpleNamespace(context_length=CONTEXT, layers=3)
        self.register_buffer("word_ids", torch.stack([tokenize(w, CONTEXT)[0, 1] for w in WORDS]))
        self.text_width = text_width
        self.observed: list[tuple[bool, bool]] = []  # (training, grad enabled) at every call

    def _observe(self) -> None:
        self.observed.append((self.training, torch.is_grad_enabled()))

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        self._observe()
        return images.flatten(1).float()

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        self._observe()
        return (tokens.unsqueeze(-1) == self.word_ids).any(dim=1).float()

    def image_layers(self, images: torch.Tensor) -> list[torch.Tensor]:
        self._observe()
        separable = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
        independent = torch.tensor([[-10.0, 0.0], [10.0, 0.0]])
        return [layout.expand(images.shape[0], 2, 2) for layout in (separable, independent)]

    def text_layers(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        self._observe()
        batch, length = tokens.shape
        positions = torch.arange(length, dtype=torch.float32)
        separable = torch.stack([torch.full_like(positions, 10.0), positions], dim=-1)
        independent = torch.stack([torch.where(positions % 2 == 0, -10.0, 10.0), 1 + positions // 2], dim=-1)
        layers = []
        for layout in (torch.zeros(length, 2), separable, independent):
            layout = layout.expand(batch, length, 2).clone()
            valid = torch.arange(length) <= tokens.argmax(dim=-1, keepdim=True)
            layout[~valid] = FAR
            layers.append(torch.cat([layout, torch.zeros(batch, length, self.text_width - 2)], dim=-1))
        return layers


def onehot(*axes: int) -> torch.Tensor:
    return torch.eye(len(WORDS))[list(axes)]


# --- retrieval ---------------------------------------------------------------------------------

def test_recall_at_k_by_hand_both_directions_with_ties_and_clipping() -> None:
    similarity = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.0],  # image 0: nothing above 0.9 -> rank 0
            [0.8, 0.5, 0.5, 0.1],  # image 1: 0.8 above (the tied 0.5 is not) -> rank 1
            [0.3, 0.7, 0.2, 0.6],  # image 2: 0.3, 0.7, 0.6 above -> rank 3
            [0.4, 0.3, 0.2, 0.1],  # image 3: 0.4, 0.3, 0.2 above -> rank 3
        ]
    )
    # Texts (columns): 0 -> rank 0; 1 -> 0.7 above, rank 1; 2 -> 0.5 above (0.2 ties), rank 1;
    # 3 -> 0.6 above (0.1 ties), rank 1.  K=5 > N=4 is clipped to 4.
    assert recall_at_k(similarity, ks=(1, 2, 3, 5)) == {
        "i2t_r1": 25.0, "i2t_r2": 50.0, "i2t_r3": 50.0, "i2t_r5": 100.0,
        "t2i_r1": 25.0, "t2i_r2": 100.0, "t2i_r3": 100.0, "t2i_r5": 100.0,
    }


def test_retrieval_recall_uses_cosine_similarity() -> None:
    images = torch.diag(torch.tensor([1.0, 2.0, 3.0]))  # scale must not matter
    assert retrieval_recall(images, torch.eye(3), ks=(1,)) == {"i2t_r1": 100.0, "t2i_r1": 100.0}
    shifted = torch.eye(3).roll(1, dims=1)  # text i is e_{i+1}: every true pair scores 0, one rival scores 1
    assert retrieval_recall(images, shifted, ks=(1, 2)) == {"i2t_r1": 0.0, "i2t_r2": 100.0, "t2i_r1": 0.0, "t2i_r2": 100.0}


@pytest.mark.parametrize("ks", [(), (0,), (1, -5)])
def test_recall_rejects_bad_cutoffs(ks: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="positive integers"):
        recall_at_k(torch.eye(3), ks)


def test_retrieval_rejects_unpaired_features() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        retrieval_recall(torch.zeros(3, 4), torch.zeros(2, 4))


# --- modality NMI ------------------------------------------------------------------------------

def mixed_nmi_by_hand() -> float:
    """Modalities (I, I, T, T) against clusters (L, L, L, R): NMI = 2 MI / (H(modality) + H(cluster))."""
    mutual = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    h_modality = math.log(2)
    h_cluster = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    return 2 * mutual / (h_modality + h_cluster)


def test_modality_nmi_by_hand() -> None:
    separable = (torch.tensor([[0.0, 0.0], [0.0, 1.0]]), torch.tensor([[10.0, 0.0], [10.0, 1.0], [10.0, 2.0]]))
    independent = (torch.tensor([[-10.0, 0.0], [10.0, 0.0]]), torch.tensor([[-10.0, 1.0], [10.0, 1.0]]))
    mixed = (torch.tensor([[-10.0, 0.0], [-10.0, 1.0]]), torch.tensor([[-10.0, 2.0], [10.0, 0.0]]))
    assert modality_nmi([separable[0]], [separable[1]]) == pytest.approx(1.0)
    assert modality_nmi([independent[0]], [independent[1]]) == pytest.approx(0.0, abs=1e-12)
    assert modality_nmi([mixed[0]], [mixed[1]]) == pytest.approx(mixed_nmi_by_hand())  # 0.3437
    pairs = (separable, independent, mixed)
    assert modality_nmi([p[0] for p in pairs], [p[1] for p in pairs], seed=3) == pytest.approx(
        (1.0 + 0.0 + mixed_nmi_by_hand()) / 3
    )


def test_modality_nmi_rejects_mismatched_pairs() -> None:
    with pytest.raises(ValueError, match="equal width"):
        modality_nmi([torch.zeros(2, 3)], [torch.zeros(2, 4)])
    with pytest.raises(ValueError, match="one text token set per image"):
        modality_nmi([torch.zeros(2, 3)], [])


def test_layerwise_nmi_pairs_layers_from_the_end_and_drops_padding() -> None:
    tokens = tokenize(["a cat", "a dog", "a car"], CONTEXT)  # 4 valid tokens each, then padding
    images = torch.zeros(3, 1)
    scores = layerwise_nmi(ToyCLIP(), images, tokens, batch_size=2)
    assert scores == [pytest.approx(1.0), pytest.approx(0.0, abs=1e-12)]


def test_layerwise_nmi_is_empty_when_widths_differ() -> None:
    assert layerwise_nmi(ToyCLIP(text_width=3), torch.zeros(2, 1), tokenize(["a cat", "a dog"], CONTEXT)) == []


# --- zero-shot ---------------------------------------------------------------------------------

CLASSES = WORDS[:6]
TEMPLATES = ("a {}.", "a photo of a {}.")


def test_zero_shot_classifier_is_the_renormalized_template_mean() -> None:
    classifier = zero_shot_classifier(ToyCLIP(), CLASSES, TEMPLATES, CONTEXT, "cpu", batch_size=5)
    # "a cat." -> e_cat; "a photo of a cat." -> (e_cat + e_photo) / sqrt(2) after normalizing.
    a, b = 1 + 1 / math.sqrt(2), 1 / math.sqrt(2)
    expected = (a * onehot(*range(6)) + b * onehot(6)).t() / math.hypot(a, b)
    torch.testing.assert_close(classifier, expected)


def zero_shot_task() -> ZeroShotTask:
    images = torch.cat([onehot(0), onehot(1), onehot(2), onehot(6), onehot(0, 1, 2, 4, 5).sum(0, keepdim=True)])
    # image 0, 1: right; image 2 (class 2, labelled 3): one class above -> top-5 only;
    # image 3 ("photo"): every class ties -> counts as right; image 4: five classes above -> wrong.
    return ZeroShotTask("toy", images, torch.tensor([0, 1, 3, 5, 3]), CLASSES, TEMPLATES)


def test_zero_shot_accuracy_by_hand() -> None:
    assert zero_shot_accuracy(ToyCLIP(), zero_shot_task(), CONTEXT, "cpu", batch_size=2) == {"top1": 60.0, "top5": 80.0}


def test_zero_shot_reports_top5_only_with_five_classes() -> None:
    task = ZeroShotTask("four", onehot(0, 1, 3), torch.tensor([0, 1, 2]), CLASSES[:4], TEMPLATES)
    assert zero_shot_accuracy(ToyCLIP(), task, CONTEXT, "cpu") == {"top1": pytest.approx(200 / 3)}


def test_zero_shot_rejects_labels_outside_the_classes() -> None:
    task = ZeroShotTask("bad", onehot(0, 1), torch.tensor([0, 7]), CLASSES, TEMPLATES)
    with pytest.raises(ValueError, match="labels must lie in"):
        zero_shot_accuracy(ToyCLIP(), task, CONTEXT, "cpu")


# --- linear probe ------------------------------------------------------------------------------

def blobs(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(per_class)
    features = 5 * torch.eye(len(WORDS))[labels] + 0.3 * torch.randn(len(labels), len(WORDS), generator=generator)
    return features, labels


def test_linear_probe_separable_data() -> None:
    train, test = blobs(20, seed=0), blobs(10, seed=1)
    assert linear_probe(*train, *test, seed=0) == 100.0
    wrong = (test[1] + 1) % 3  # every test label swapped for another class
    assert linear_probe(*train, test[0], wrong, seed=0) == 0.0


def test_linear_probe_needs_two_training_classes() -> None:
    features, labels = blobs(4, seed=0)
    with pytest.raises(ValueError, match="at least two classes"):
        linear_probe(features[:4], labels[:4], features, labels)


# --- orchestration -----------------------------------------------------------------------------

def bundle() -> SimpleNamespace:
    captions = ("a cat", "a dog", "a car", "a tree")
    pairs = PairSet("val", onehot(0, 1, 2, 0), tokenize(captions, CONTEXT), captions)
    train, test = blobs(20, seed=0), blobs(10, seed=1)
    probe = LinearProbeTask("blobs", train[0], train[1], test[0], test[1], classnames=WORDS[:3])
    return SimpleNamespace(val_pairs=[pairs], zeroshot=[zero_shot_task()], linear_probe=[probe])


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_collects_every_metric_and_restores_mode(training: bool) -> None:
    model = ToyCLIP().train(training)
    metrics = evaluate(model, bundle(), batch_size=3, nmi_pairs=3, progress=False)
    assert metrics == {
        # image 3 shows a cat: text 0 outranks its caption (i2t), but caption 3 ties every image (t2i).
        "retrieval/val/i2t_r1": 75.0, "retrieval/val/i2t_r5": 100.0, "retrieval/val/i2t_r10": 100.0,
        "retrieval/val/t2i_r1": 100.0, "retrieval/val/t2i_r5": 100.0, "retrieval/val/t2i_r10": 100.0,
        "zeroshot/toy/top1": 60.0, "zeroshot/toy/top5": 80.0,
        "linear_probe/blobs/acc": 100.0,
        "nmi/layer_01": pytest.approx(1.0), "nmi/layer_02": pytest.approx(0.0, abs=1e-12), "nmi/mean": pytest.approx(0.5),
    }
    assert model.training is training
    assert model.observed and set(model.observed) == {(False, False)}


def test_evaluate_skips_nmi_for_unequal_widths_and_when_disabled() -> None:
    metrics = evaluate(ToyCLIP(text_width=3), bundle(), progress=False)
    assert metrics and not any(key.startswith("nmi/") for key in metrics)
    metrics = evaluate(ToyCLIP(), bundle(), nmi_pairs=0, progress=False)
    assert not any(key.startswith("nmi/") for key in metrics)


def test_evaluate_names_missing_bundle_fields() -> None:
    with pytest.raises(TypeError, match="lacks linear_probe"):
        evaluate(ToyCLIP(), SimpleNamespace(val_pairs=[], zeroshot=[]), progress=False)


@pytest.mark.parametrize(
    ("preset", "nmi_layers"),
    [("msclip", range(12)), ("msclip-es", range(1, 12)), ("clip", range(0))],  # ES: 11 vision layers; clip: narrow text width
)
def test_evaluate_real_tiny_model(preset: str, nmi_layers: range) -> None:
    from search_spaces import build_model

    torch.manual_seed(0)
    model = build_model(preset, "tiny").train()
    size = model.size
    captions = ("a red circle", "a blue square", "a green star", "a big cat")
    images = torch.randn(4, 3, size.image_size, size.image_size)
    data = SimpleNamespace(
        val_pairs=[PairSet("val", images, tokenize(captions, size.context_length), captions)],
        zeroshot=[ZeroShotTask("zs", images, torch.tensor([0, 1, 2, 3]), CLASSES, TEMPLATES)],
        linear_probe=[LinearProbeTask("lp", images, torch.tensor([0, 1, 0, 1]), images, torch.tensor([0, 1, 0, 1]), ("a", "b"))],
    )
    metrics = evaluate(model, data, batch_size=3, nmi_pairs=2, progress=False)
    assert model.training
    assert {k for k in metrics if k.startswith("nmi/layer_")} == {f"nmi/layer_{i:02d}" for i in nmi_layers}
    assert ("nmi/mean" in metrics) == bool(nmi_layers)
    assert metrics["linear_probe/lp/acc"] == 100.0  # train == test, 4 points in 64 dimensions
    assert all(0.0 <= v <= 100.0 for v in metrics.values()) and len(metrics) == 6 + 2 + 1 + len(nmi_layers) + bool(nmi_layers)


def test_contrastive_chance_is_ln_batch_averaged_per_pair_by_hand():
    from trainer.evaluation.chance import contrastive_chance

    assert contrastive_chance(4096, 128) == pytest.approx(4.852030, abs=1e-6)  # ln 128
    assert contrastive_chance(300, 128) == pytest.approx((256 * 4.852030 + 44 * 3.784190) / 300, abs=1e-5)  # 128, 128, 44
    assert contrastive_chance(300, 128) == pytest.approx(4.695414, abs=1e-6)
    assert contrastive_chance(257, 128) == pytest.approx(4.852030, abs=1e-6)  # a last batch of 1 is dropped
    with pytest.raises(ValueError, match="no batch of 2"):
        contrastive_chance(1, 128)


def test_chance_levels_and_units_say_what_a_number_means():
    from trainer.evaluation.chance import chance_levels, unit_of

    data = bundle()
    chance = chance_levels(data)
    n = data.val_pairs[0].images.shape[0]
    assert chance["retrieval/val/i2t_r1"] == pytest.approx(100.0 / n)
    assert chance["retrieval/val/t2i_r5"] == 100.0  # K above N: recall is 100 by definition
    task = data.zeroshot[0]
    assert chance[f"zeroshot/{task.name}/top1"] == pytest.approx(100.0 / len(task.classnames))
    probe = data.linear_probe[0]
    majority = torch.bincount(probe.test_labels).max().item() / probe.test_labels.numel()
    assert chance[f"linear_probe/{probe.name}/acc"] == pytest.approx(100.0 * majority)
    assert (unit_of("retrieval/shapes/i2t_r1"), unit_of("heldout/shapes/loss"), unit_of("nmi/mean")) == ("%", "nats", "0-1")
    # a random ranking scores about chance
    torch.manual_seed(0)
    image, text = torch.randn(400, 16), torch.randn(400, 16)
    assert abs(retrieval_recall(image, text)["i2t_r10"] - 100.0 * 10 / 400) < 2.0


class Uninformative(nn.Module):
    """The same feature for every image and every caption: every pairing is equally likely."""

    def forward(self, images, tokens):
        rows = images.shape[0]
        return torch.ones(rows, 4) / 2.0, torch.ones(rows, 4) / 2.0, torch.tensor(10.0)


def test_contrastive_chance_is_what_uninformative_features_score():
    from trainer.evaluation.chance import contrastive_chance
    from trainer.evaluation.heldout import held_out_loss

    batches = [(torch.zeros(n, 3, 4, 4), torch.zeros(n, 5, dtype=torch.long)) for n in (128, 128, 44)]
    assert held_out_loss(Uninformative(), batches, "cpu") == pytest.approx(contrastive_chance(300, 128), abs=1e-5)
