"""What a backbone knows of the world, apart from any one person: generic retrieval and the collapse gate.

generic retrieval  t2i and i2t recall@1/5/10 on the held-out procedural set (``procedural.generic_set``):
                   what the stand-in was pre-trained for, and what ``retention`` compares with and
                   without a person's adapter (an adapter should teach new words, not unlearn old ones).
collapse gate      mean pairwise cosine of the text embeddings of invented words never seen in
                   pre-training (``procedural.GATE_WORDS``). A backbone that maps unseen words to one
                   point (cosine near 1) leaves an adapter nothing to tell a person's words apart with.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from qualia import procedural
from qualia.config import TINY_BACKBONE
from qualia.embed import Encoder
from qualia.evaluate import recalls

GENERIC_SET_SIZE = 400  # for the stand-in; a hub backbone is slower per picture and gets half


@functools.lru_cache(maxsize=4)
def _generic_set(n: int) -> tuple[tuple, tuple[str, ...]]:
    pictures, captions = procedural.generic_set(n)
    return tuple(pictures), tuple(captions)


def generic_pixels(encoder: Encoder, n: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """The held-out generic set as this backbone's preprocessed pixels (n, 3, S, S) and captions."""
    if n is None:
        n = GENERIC_SET_SIZE if encoder.backbone.name == TINY_BACKBONE else GENERIC_SET_SIZE // 2
    pictures, captions = _generic_set(n)
    return torch.stack([encoder.backbone.preprocess(p) for p in pictures]), list(captions)


def generic_retrieval(encoder: Encoder, pixels: torch.Tensor, captions: list[str]) -> dict[str, Any]:
    """t2i and i2t recall@1/5/10 over the generic set (caption i goes with picture i)."""
    sim = encoder.encode_texts(captions) @ encoder.encode_pixels(pixels).T
    positive = np.eye(len(captions), dtype=bool)
    return {"t2i": recalls(sim, positive), "i2t": recalls(sim.T, positive)}


def mean_recall(metrics: dict[str, Any]) -> float:
    """One number for a retrieval result: the mean of t2i and i2t recall@1, @5 and @10."""
    values = [metrics[d][f"r{k}"] for d in ("t2i", "i2t") for k in (1, 5, 10)]
    return float(np.mean(values))


def retention(adapted: dict[str, Any], base: dict[str, Any]) -> float:
    """Generic retrieval with the adapter / without it (1.0 = nothing general was lost)."""
    denominator = mean_recall(base)
    return float(mean_recall(adapted) / denominator) if denominator > 0 else 1.0


def nonce_collapse(encoder: Encoder, words: list[str] | None = None) -> float:
    """Mean pairwise cosine of unseen invented words' text embeddings (lower = kept apart)."""
    emb = encoder.encode_texts(words or procedural.GATE_WORDS)
    sim = emb @ emb.T
    n = len(emb)
    return float((sim.sum() - np.trace(sim)) / (n * (n - 1)))
