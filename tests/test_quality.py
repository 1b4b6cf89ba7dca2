"""The quality figures: mixed search, centering, retention, per-cue precision (known answers, small arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qualia.evaluate import centered, embedding_metrics, mixed_metrics, unit
from qualia.generic import mean_recall, retention
from qualia.index import choose_mixed, modality_bias
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


def test_index_takes_the_way_of_mixed_search_that_did_best() -> None:
    def way(r10: float, share: float) -> dict[str, float]:
        return {"r10": r10, "image_share": share}

    measured = {"mixed": way(0.2, 0.4), "mixed_centered": way(0.1, 0.3), "mixed_calibrated": way(0.3, 0.7),
                "mixed_centered_calibrated": way(0.25, 0.7)}
    assert choose_mixed(measured) == (False, True)
    assert choose_mixed({**measured, "mixed_centered": way(0.6, 0.1)}) == (True, False)
    assert choose_mixed({**measured, "mixed_centered_calibrated": way(0.3, 0.7)}) == (True, True)  # a tie: both
    assert choose_mixed({"mixed": way(0.6, 0.5), "mixed_centered": way(0.3, 0.6)}) == (False, False)  # older reports
    assert choose_mixed(None) == (True, True)


def test_modality_bias_levels_the_best_scores_of_both_modalities() -> None:
    texts, images = _gapped(n=40)
    bias = modality_bias(images, texts, k=5)
    assert bias["text"]["text"] == 0.0 and bias["image"]["image"] == 0.0
    assert bias["text"]["image"] > 0.5 and bias["image"]["text"] > 0.5  # the gap: the other modality scores far lower
    for query_rows, own, other, shift in ((texts, texts, images, bias["text"]["image"]),
                                          (images, images, texts, bias["image"]["text"])):
        same = query_rows @ own.T
        np.fill_diagonal(same, -np.inf)
        best_same = np.sort(same, axis=1)[:, -5:].mean()
        best_other = np.sort(query_rows @ other.T + shift, axis=1)[:, -5:].mean()
        assert best_other == pytest.approx(best_same, abs=1e-5)
    assert modality_bias(images[:0], texts) is None


def test_calibration_brings_pictures_back_with_the_paired_one() -> None:
    texts, images = _gapped()
    pairs = _pairs(24)
    plain = mixed_metrics(texts, images, pairs)
    calibrated = mixed_metrics(texts, images, pairs, calibrated=True)
    assert plain["image_share"] == 0.0 and plain["r10"] == 0.0
    assert calibrated["image_share"] >= 0.3 and calibrated["r10"] >= 0.8
    report = embedding_metrics(texts, images, pairs)
    assert report["mixed_calibrated"] == calibrated
    assert set(report) >= {"mixed", "mixed_centered", "mixed_calibrated", "mixed_centered_calibrated"}


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
