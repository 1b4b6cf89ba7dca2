"""From the corpus to weighted text-image pairs, and their train/validation split. No torch here.

Which words go with a picture depends on where the picture was seen:
  pin, carousel, story  the pin's title and description (its alt text when both are empty)
  body                  the figure's caption and alt text in the post
  cover                 the post's title and subtitle
Pairs with no words are skipped; the same words with the same picture count once.

Weights: a pair's weight is how much it says about *this* person's taste. Degree 0-1 things are
theirs (their pins, their posts, what they chose to follow) and weigh 1. Degree 2 things were
chosen by someone they follow (a recommended publication's posts, related pins): evidence of the
neighbourhood of their taste, not of it, so they weigh half and cannot outvote the person's own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qualia.corpus import Corpus, ImageOccurrence

MAX_TEXT_CHARS = 300  # CLIP reads at most 77 tokens; longer text is noise for the tokenizer to cut
DEGREE_WEIGHTS = {0: 1.0, 1: 1.0, 2: 0.5}
FAR_WEIGHT = 0.25  # degree 3 and beyond, should a crawl ever go there
_SPACE = re.compile(r"\s+")


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


def degree_weight(degree: int) -> float:
    return DEGREE_WEIGHTS.get(degree, FAR_WEIGHT)


def _clean(text: str | None) -> str:
    return _SPACE.sub(" ", text or "").strip()


def _join(parts: Iterable[str | None]) -> str:
    kept: list[str] = []
    for part in map(_clean, parts):
        if part and part.lower() not in (k.lower() for k in kept):
            kept.append(part)
    text = ""
    for part in kept:
        text = part if not text else (f"{text} {part}" if text[-1] in ".!?:;" else f"{text}. {part}")
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS].rsplit(" ", 1)[0]
    return text


def pair_text(occurrence: ImageOccurrence, item_data: dict | None = None) -> str:
    """The words that go with one picture, by its role (see the module's docstring)."""
    o = occurrence
    if o.role in ("pin", "carousel", "story"):
        return _join([o.item_title, o.item_text]) or _join([o.alt, o.caption])
    if o.role == "body":
        return _join([o.caption, o.alt])
    if o.role == "cover":
        return _join([o.item_title, (item_data or {}).get("subtitle")])
    return _join([o.caption, o.alt]) or _clean(o.item_title)


def corpus_pairs(corpus: Corpus) -> list[Pair]:
    """Every distinct (text, picture) pair in the corpus, in the corpus's stable order."""
    data_cache: dict[str, dict] = {}
    best: dict[tuple[str, str], Pair] = {}
    for o in corpus.image_occurrences():
        data = None
        if o.role == "cover":
            if o.item_id not in data_cache:
                data_cache[o.item_id] = (corpus.item(o.item_id) or {}).get("data") or {}
            data = data_cache[o.item_id]
        text = pair_text(o, data)
        if not text:
            continue
        key = (text, o.sha256)
        seen = best.get(key)
        if seen is None or o.degree < seen.degree:  # the closest sighting speaks for the pair
            best[key] = Pair(
                text=text,
                image_sha256=o.sha256,
                image_path=o.image_path,
                artifact_id=o.item_id,
                source=o.source,
                degree=o.degree,
                role=o.role,
                weight=degree_weight(o.degree),
            )
    return list(best.values())


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
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
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
