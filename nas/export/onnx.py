"""ONNX export of the image and text encoders (dynamic batch), verified with onnxruntime.

The text encoder pools the end-of-text token with an argmax over the token ids; onnxruntime has no
int64 ArgMax kernel, so the exported graph takes the argmax of the ids as int32 (the vocabulary fits).
Attention uses `scaled_dot_product_attention(is_causal=...)`, so no fixed-size mask is baked in.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from search_spaces import SharedCLIP

IMAGE_FILE, TEXT_FILE = "image_encoder.onnx", "text_encoder.onnx"
TOLERANCE = 1e-4


class ImageEncoder(nn.Module):
    def __init__(self, model: SharedCLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(image)


class TextEncoder(nn.Module):
    def __init__(self, model: SharedCLIP) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.model.text.ln_final(self.model._text_tokens(tokens))
        eot = tokens.to(torch.int32).argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.model.text.text_projection


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str) -> None:
    # The exporter restores the wrapper's train/eval mode afterwards, recursively: a wrapper left in
    # train mode would put the model's BatchNorms back into training.
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on Python-side shape checks, exporter deprecations
        torch.onnx.export(
            module, (example,), str(path), input_names=[input_name], output_names=["features"],
            dynamic_axes={input_name: {0: "batch"}, "features": {0: "batch"}}, opset_version=18, dynamo=False,
        )


def export_onnx(model: SharedCLIP, out: str | Path, batches: tuple[int, ...] = (1, 3)) -> dict[str, Any]:
    """Write both encoders to `out` and check them against PyTorch at each batch size; returns the files
    and the largest absolute difference seen. Raises RuntimeError past `TOLERANCE`."""
    import onnxruntime as ort

    out = Path(out)
    model = model.cpu().eval()
    size = model.size
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, size.image_size, size.image_size, generator=generator)
    tokens = torch.randint(1, size.vocab_size - 2, (2, size.context_length), generator=generator)
    tokens[:, -3] = size.vocab_size - 1  # an end-of-text id, not in the last position
    tokens[:, -2:] = 0
    image_path, text_path = out / IMAGE_FILE, out / TEXT_FILE
    with torch.no_grad():
        _export(ImageEncoder(model), image, image_path, "image")
        _export(TextEncoder(model), tokens, text_path, "tokens")
    worst = 0.0
    for path, encode, make in (
        (image_path, model.encode_image, lambda b: torch.randn(b, 3, size.image_size, size.image_size, generator=generator)),
        (text_path, model.encode_text, lambda b: _tokens(b, size.context_length, size.vocab_size, generator)),
    ):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for batch in batches:
            x = make(batch)
            with torch.no_grad():
                expected = encode(x).numpy()
            got = session.run(None, {name: x.numpy()})[0]
            diff = float(np.abs(got - expected).max())
            worst = max(worst, diff)
            if diff > TOLERANCE:
                raise RuntimeError(f"{path.name}: onnxruntime differs from PyTorch by {diff:.2e} at batch {batch} (tolerance {TOLERANCE})")
    return {"image": IMAGE_FILE, "text": TEXT_FILE, "max_abs_diff": worst, "checked_batches": list(batches), "opset": 18}


def _tokens(batch: int, context: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """Token rows of different lengths, each ending in the end-of-text id (the largest) and zero padding."""
    tokens = torch.zeros(batch, context, dtype=torch.long)
    for row in range(batch):
        length = 2 + int(torch.randint(0, context - 2, (1,), generator=generator))
        tokens[row, : length - 1] = torch.randint(1, vocab - 2, (length - 1,), generator=generator)
        tokens[row, length - 1] = vocab - 1
    return tokens
