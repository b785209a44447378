import logging

import open_clip
import pytest
import torch

from search_spaces import PolicyError, from_open_clip


@pytest.fixture(scope="module")
def reference():
    logging.getLogger().setLevel(logging.ERROR)
    torch.manual_seed(1234)
    return open_clip.create_model("ViT-B-32", pretrained=None).eval()


def test_import_reproduces_open_clip_embeddings(reference):
    model = from_open_clip(reference).eval()
    assert model.policy.name == "clip"
    torch.manual_seed(0)
    images = torch.randn(2, 3, 224, 224)
    text = open_clip.get_tokenizer("ViT-B-32")(["a diagram", "a small red circle left of a blue square"])
    with torch.no_grad():
        assert (model.encode_image(images) - reference.encode_image(images)).abs().max() <= 1e-5
        assert (model.encode_text(text) - reference.encode_text(text)).abs().max() <= 1e-5
        ours, theirs = model(images, text), reference(images, text)
    torch.testing.assert_close(ours[2], theirs[2])


def test_warm_start_takes_shared_modules_from_the_vision_tower(reference):
    model = from_open_clip(reference.state_dict(), policy="msclip")
    ref = reference.state_dict()
    torch.testing.assert_close(model.blocks[4].attn.shared.in_proj_weight, ref["visual.transformer.resblocks.4.attn.in_proj_weight"])
    torch.testing.assert_close(model.blocks[4].ln_1.vision.weight, ref["visual.transformer.resblocks.4.ln_1.weight"])
    torch.testing.assert_close(model.visual.proj, ref["visual.proj"])
    assert model.text.token_embedding.weight.shape[1] == 768  # 512-wide text cannot be copied


def test_a_foreign_state_dict_is_refused(reference):
    with pytest.raises(PolicyError, match="not an open_clip ViT state dict"):
        from_open_clip({"weight": torch.zeros(2)})
    sd = dict(reference.state_dict())
    sd["visual.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(PolicyError, match="unexpected key visual.extra_head.weight"):
        from_open_clip(sd)
