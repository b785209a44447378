"""Tokenization with open_clip's BPE tokenizer (its vocabulary ships in the wheel, no download)."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch


@lru_cache(maxsize=None)
def _tokenizer(context_length: int):
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


@lru_cache(maxsize=2**16)
def _tokenize_one(text: str, context_length: int) -> torch.Tensor:
    return _tokenizer(context_length)([text], context_length=context_length)


def tokenize(texts: str | Sequence[str], context_length: int) -> torch.Tensor:
    """Token ids `[N, context_length]` (start token, BPE ids, end token, zero padding; truncated).

    Repeated texts are tokenized once (templated captions repeat a lot); one text at a time (a dataset's
    items) is tokenized once per process, about a millisecond per caption saved each epoch."""
    if isinstance(texts, str):
        return _tokenize_one(texts, context_length).clone()
    unique = list(dict.fromkeys(texts))
    tokens = _tokenizer(context_length)(unique, context_length=context_length)
    if len(unique) == len(texts):
        return tokens
    position = {text: i for i, text in enumerate(unique)}
    return tokens[[position[text] for text in texts]]
