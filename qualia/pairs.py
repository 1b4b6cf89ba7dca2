"""From the corpus to weighted text-image pairs, and their train/validation split. No torch here.

Which words go with a picture is the text policy's (``qualia.text.picture_texts``): a picture's own
words, and for a figure in a post also the paragraphs around it, at ``text.CONTEXT_FACTOR`` of the
weight. Pictures with no words are skipped, and the same words with the same picture count once.

Weights: a pair's weight is how much it says about *this* person's taste. Degree 0-1 things are
theirs (their pins, their posts, what they chose to follow) and weigh 1. Degree 2 things were
chosen by someone they follow (a recommended publication's posts, related pins): evidence of the
neighbourhood of their taste, not of it, so they weigh half and cannot outvote the person's own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qualia import text
from qualia.corpus import Corpus, ImageOccurrence
from qualia.errors import InvalidArgument

DEGREE_WEIGHTS = {0: 1.0, 1: 1.0, 2: 0.5}
FAR_WEIGHT = 0.25  # degree 3 and beyond, should a crawl ever go there


@dataclass(frozen=True)
class Pair:
    text: str
    image_sha256: str
    image_path: Path
    artifact_id: str  # the corpus item the pair comes from (the unit of the train/val split)
    source: str
    degree: int
    role: str
    weight: float
    text_source: str = "caption"  # one of text.TEXT_SOURCES (or "feedback"): where the words came from
    negative: bool = False  # a person said this picture does NOT fit these words (``qualia.feedback``)


def degree_weight(degree: int) -> float:
    return DEGREE_WEIGHTS.get(degree, FAR_WEIGHT)


def described_occurrences(corpus: Corpus) -> Iterator[tuple[ImageOccurrence, list[tuple[str, str, float]]]]:
    """Every (item, stored picture) pairing with the texts that describe it (``text.picture_texts``;
    empty when none), in corpus order."""
    subtitles: dict[str, Any] = {}
    for o in corpus.image_occurrences():
        if o.role == "cover" and o.item_id not in subtitles:
            subtitles[o.item_id] = (corpus.item_data(o.item_id) or {}).get("subtitle")
        texts = text.picture_texts(
            o.role,
            item_title=o.item_title,
            item_text=o.item_text,
            subtitle=subtitles.get(o.item_id) if o.role == "cover" else None,
            alt=o.alt,
            caption=o.caption,
            context=o.context,
        )
        yield o, texts


def corpus_pairs(corpus: Corpus) -> list[Pair]:
    """Every distinct (text, picture) pair in the corpus, in the corpus's stable order."""
    best: dict[tuple[str, str], Pair] = {}
    for o, texts in described_occurrences(corpus):
        for words, source, factor in texts:
            key = (words, o.sha256)
            weight = degree_weight(o.degree) * factor
            seen = best.get(key)
            # the closest, surest sighting speaks for the pair
            if seen is None or (o.degree, -weight) < (seen.degree, -seen.weight):
                best[key] = Pair(
                    text=words,
                    image_sha256=o.sha256,
                    image_path=o.image_path,
                    artifact_id=o.item_id,
                    source=o.source,
                    degree=o.degree,
                    role=o.role,
                    weight=weight,
                    text_source=source,
                )
    return list(best.values())


def pair_counts(pairs: list[Pair]) -> dict[str, Any]:
    """How many pairs, and their total weight, by where their words came from and by degree."""
    by_text: dict[str, int] = {}
    by_degree: dict[str, dict[str, float]] = {}
    for p in pairs:
        by_text[p.text_source] = by_text.get(p.text_source, 0) + 1
        slot = by_degree.setdefault(str(p.degree), {"pairs": 0, "weight": 0.0})
        slot["pairs"] += 1
        slot["weight"] = round(slot["weight"] + p.weight, 3)
    return {
        "pairs_by_text_source": dict(sorted(by_text.items())),
        "pairs_by_degree": dict(sorted(by_degree.items())),
        "pair_weights": {"by_degree": {str(d): w for d, w in DEGREE_WEIGHTS.items()}, "further": FAR_WEIGHT,
                         "context_factor": text.CONTEXT_FACTOR},  # fmt: skip
    }


def corpus_summary(corpus: Corpus) -> dict[str, Any]:
    """What ``qualia corpus --json`` shows: the corpus's counts and how many pairs they make."""
    pairs = corpus_pairs(corpus)
    return {**corpus.counts(), "pairs": len(pairs), **pair_counts(pairs)}


def _artifact_groups(pairs: list[Pair]) -> dict[str, str]:
    """artifact -> representative of its group; artifacts showing the same picture share a group,
    so a picture (a repin, a reused cover) never sits on both sides of the split."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first_artifact_of_image: dict[str, str] = {}
    for p in pairs:
        find(p.artifact_id)
        other = first_artifact_of_image.setdefault(p.image_sha256, p.artifact_id)
        ra, rb = find(p.artifact_id), find(other)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # min: the representative is independent of list order
    return {a: find(a) for a in parent}


def _unit_hash(key: str, seed: int) -> float:
    return int(hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()[:16], 16) / 2**64


def split_pairs(pairs: list[Pair], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(train, val) split by artifact: all pairs of an item (and of items sharing a picture with it)
    go to one side. A group's side depends only on its id and ``seed``, not on the list's order or on
    other items, so a growing corpus keeps old items where they were."""
    if not 0.0 < val_fraction < 1.0:
        raise InvalidArgument(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    groups = _artifact_groups(pairs)
    score = {g: _unit_hash(g, seed) for g in set(groups.values())}
    val_groups = {g for g, u in score.items() if u < val_fraction}
    if len(score) >= 2 and not val_groups:
        val_groups = {min(score, key=score.get)}
    if len(score) >= 2 and val_groups == set(score):
        val_groups.discard(max(score, key=score.get))
    train = [p for p in pairs if groups[p.artifact_id] not in val_groups]
    val = [p for p in pairs if groups[p.artifact_id] in val_groups]
    return train, val
