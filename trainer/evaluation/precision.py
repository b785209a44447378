"""The one precision every score is computed in: IEEE fp32, whatever precision the model trained in.

The bench's ground truth, the rank check's proxies, the searches' objectives and derivations, the
fine-tunes before scoring and the gradient cosines all go through `scoring_precision`, so a score
from one can be compared with a score from another on any device. fp32 rather than the training
precision: bf16 keeps 8 bits of mantissa and moved the held-out loss of a tiny msclip (after 2
bf16 training steps) by 8e-4 (3.4761 against 3.4752), a tenth of the median gap between
neighbouring policies of ShareBench-tiny (0.009), a rounding error that is not the same for every
policy; TF32 (10 bits, which the trainer enables for CUDA matmuls and cuDNN enables for
convolutions by default) is turned off for the same reason. With the default `train.precision:
auto`, CPU scores were fp32 already, so the committed (CPU-built) results stay valid; and scoring
costs a few forward passes next to the training it scores.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

SCORE_PRECISION = "fp32"
"""Recorded as `score_precision` in the results the bench and the rank check write."""


@contextlib.contextmanager
def scoring_precision(device: torch.device | str) -> Iterator[None]:
    """Autocast off for `device`'s type (also inside a caller's bf16 region) and, on CUDA, TF32 off
    for matmuls and convolutions; the previous settings come back on exit."""
    device = torch.device(device)
    with torch.autocast(device_type=device.type, enabled=False):
        if device.type != "cuda":
            yield
            return
        matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
