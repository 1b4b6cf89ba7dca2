"""The quality figures: mixed search, centering, retention, per-cue precision (known answers, small arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qualia.evaluate import centered, embedding_metrics, mixed_metrics, unit
from qualia.generic import mean_recall, retention
from qualia.index import choose_centering
from qualia.pairs import Pair


def _pairs(n: int) -> list[Pair]:
    return [Pair(f"text {i}", f"sha{i}", Path(f"/x/{i}.png"), f"a{i}", "pinterest", 1, "pin", 1.0) for i in range(n)]


def _gapped(n: int = 24, dim: int = 16, gap: float = 8.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Texts and pictures that match pairwise, the two clouds pushed apart along one axis."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, dim))
    texts = shared + 0.1 * rng.normal(size=(n, dim))
    images = shared + 0.1 * rng.normal(size=(n, dim))
    texts[:, 0] += gap
    images[:, 0] -= gap
    return unit(texts), unit(images)


def test_a_gap_hides_every_picture_from_a_text_query_and_centering_brings_them_back() -> None:
    texts, images = _gapped()
    pairs = _pairs(24)
    plain = mixed_metrics(texts, images, pairs)
    assert plain["image_share"] == 0.0 and plain["r10"] == 0.0
    fixed = mixed_metrics(centered(texts, texts.mean(0)), centered(images, images.mean(0)), pairs)
    assert fixed["image_share"] >= 0.4 and fixed["r10"] == 1.0
    report = embedding_metrics(texts, images, pairs)
    assert report["mixed"] == plain and report["mixed_centered"] == fixed
    assert report["t2i"]["r10"] == 1.0  # picture-only search was never the problem


def test_a_text_does_not_find_itself_and_ties_count_against() -> None:
    pairs = _pairs(3)
    texts = unit(np.eye(3, 4))
    images = unit(np.ones((3, 4)))  # every picture alike: ties everywhere
    mixed = mixed_metrics(texts, images, pairs, k=2)
    assert mixed["r10"] == 0.0


def test_retention_is_generic_recall_with_the_adapter_over_without() -> None:
    base = {d: {"r1": 0.2, "r5": 0.4, "r10": 0.6} for d in ("t2i", "i2t")}
    adapted = {d: {"r1": 0.1, "r5": 0.2, "r10": 0.3} for d in ("t2i", "i2t")}
    assert mean_recall(base) == pytest.approx(0.4)
    assert retention(adapted, base) == pytest.approx(0.5)
    assert retention(base, base) == pytest.approx(1.0)


def test_index_centers_when_the_evaluation_says_it_helps() -> None:
    helps = {"mixed": {"r10": 0.1, "image_share": 0.0}, "mixed_centered": {"r10": 0.6, "image_share": 0.5}}
    hurts = {"mixed": {"r10": 0.6, "image_share": 0.5}, "mixed_centered": {"r10": 0.3, "image_share": 0.6}}
    assert choose_centering(helps) is True
    assert choose_centering(hurts) is False
    assert choose_centering(None) is True


def test_cue_precision_tells_a_combination_from_one_of_its_cues(tiny) -> None:
    import torch

    from qualia.embed import Encoder
    from qualia.evaluate import cue_precision

    class Fixed(Encoder):
        """Looks 'both' and 'one' as orthogonal directions; pictures labelled by look."""

        def encode_texts(self, texts):  # type: ignore[override]
            return np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)[: len(texts)]

        def encode_pixels(self, pixels):  # type: ignore[override]
            return np.array([[1, 0.1], [0.9, 0.2], [0.1, 1], [0.2, 0.9]], dtype=np.float32)

    cues = {"both": frozenset({"grain", "warm"}), "one": frozenset({"grain"})}
    labels = ["both", "one", "one", "one"]
    report = cue_precision(Fixed(tiny.model, tiny), torch.zeros(4), labels, cues, k=2)
    assert report["both"] == {"precision": 0.5, "cues": {"grain": 1.0, "warm": 0.5}}
    assert report["one"]["precision"] == 1.0
