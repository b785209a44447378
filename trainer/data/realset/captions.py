"""The real set's caption grammar, read back: `name`, `name: description.`, `name: keyword, keyword`,
or `name: description. keyword, keyword` (clip art, `clipart.Rules.caption`; emoji captions are
`name: keyword, ...`, `emoji.caption`), and the caption augmentation built on it.

`data.caption_augment: keywords` trains on a random subset of each caption's keywords, drawn anew every
epoch (each kept with probability 1/2, in the written order; name and description always kept), a
guard against memorizing 6,000 fixed captions with metadata the captions are made from. The draw is a
function of (training seed, epoch, pair index), so resumed and multi-worker runs see the same captions.
A caption the grammar does not split (no ": ", or a description without keywords) stays as it is.
"""
from __future__ import annotations

import numpy as np

KEEP_PROBABILITY = 0.5


def split_caption(caption: str) -> tuple[str, list[str]]:
    """(`name[: description.]`, keywords) of a real-set caption; no keywords where it has none."""
    name, sep, rest = caption.partition(": ")
    if not sep or not rest or rest.endswith("."):
        return caption, []
    cut = rest.rfind(". ")
    if cut < 0:
        return name, rest.split(", ")
    return f"{name}: {rest[:cut + 1]}", rest[cut + 2:].split(", ")


def join_caption(head: str, keywords: list[str]) -> str:
    """The caption of `head` (from `split_caption`) with `keywords`."""
    if not keywords:
        return head
    return head + (" " if head.endswith(".") else ": ") + ", ".join(keywords)


def keyword_subset(caption: str, seed: int, epoch: int, index: int) -> str:
    """`caption` with the random subset of its keywords of (seed, epoch, index)."""
    head, keywords = split_caption(caption)
    if not keywords:
        return caption
    keep = np.random.default_rng([seed, epoch, index]).random(len(keywords)) < KEEP_PROBABILITY
    return join_caption(head, [k for k, kept in zip(keywords, keep) if kept])
