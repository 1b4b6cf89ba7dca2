"""Held-out retrieval: does the adapter find a person's pictures from their words better than the base?

t2i  each validation text queries the gallery of the validation pairs' UNIQUE pictures; a hit when
     its own picture is in the top k.
i2t  each unique picture queries all validation texts; a hit when any of its own texts is in the top k.
gap  || mean(image embeddings) - mean(text embeddings) || of L2-normalized embeddings, the modality
     gap of Liang et al. 2022 ("Mind the Gap"), over the unique pictures and the texts.
mixed  what a person sees searching words over pictures and texts together (``modality: any``): each
     distinct validation text queries the validation pictures plus the other validation texts;
     ``image_share`` is the share of pictures in its top 10, ``r10`` whether its own picture is there.
     ``mixed_centered`` is the same after per-modality centering (each modality's mean subtracted,
     then re-normalized: the index's option); the means come from the validation embeddings themselves.
     ``mixed_calibrated`` and ``mixed_centered_calibrated`` add the index's other option, the pictures'
     scores shifted by ``index.modality_bias`` of this gallery. The index is built the best way.
generic  recall on the held-out procedural set (``qualia.generic``); ``retention`` = the adapter's
     generic recall / the base's.
Ties count against the query (a model that maps everything to one point scores 0, not 1).

Which pairs: the adapter folder's ``split.json`` lists the validation artifacts chosen at training
time, so evaluating later (after the corpus grew) never scores pictures the adapter was trained on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qualia import workspace
from qualia.backbone import Backbone, load_backbone
from qualia.corpus import Corpus
from qualia.embed import Encoder, open_image
from qualia.errors import CorruptArtifact, InvalidArgument, InvalidImage, NotEnoughData, NotFound
from qualia.index import MIXED_VARIANTS, centered, modality_bias
from qualia.lora import usable_adapter
from qualia.pairs import Pair, corpus_pairs
from qualia.progress import bar

log = logging.getLogger(__name__)

SPLIT_FILE = "split.json"
KS = (1, 5, 10)


def unique_images(pairs: Sequence[Pair]) -> list[str]:
    """The pairs' pictures (sha256), each once, in order of first appearance."""
    return list(dict.fromkeys(p.image_sha256 for p in pairs))


def preprocess_images(
    pairs: Sequence[Pair], backbone: Backbone, dtype: torch.dtype = torch.float32, progress: bool = False
) -> tuple[torch.Tensor, list[Pair], list[str]]:
    """The pairs' pictures, each read and preprocessed once: (pixels (n, 3, S, S) in ``unique_images``
    order of the kept pairs, the pairs whose picture could be read, the pictures that could not).

    A stored picture that cannot be read (damaged on disk, or stored before pictures were fully decoded)
    costs its pairs, not the profile: it is skipped and named in the log.
    """
    path_of = {p.image_sha256: p.image_path for p in pairs}
    pixels, unreadable = [], []
    for sha in bar(unique_images(pairs), enabled=progress, desc="reading the pictures", unit="picture", leave=False):
        try:
            pixels.append(backbone.preprocess(open_image(path_of[sha])).to(dtype))
        except (InvalidImage, NotFound) as e:
            log.warning("skipping picture %s: %s", sha[:12], e)
            unreadable.append(sha)
    skipped = set(unreadable)
    kept = [p for p in pairs if p.image_sha256 not in skipped]
    size = backbone.image_size
    stacked = torch.stack(pixels) if pixels else torch.zeros((0, 3, size, size), dtype=dtype)
    return stacked, kept, unreadable


def recalls(sim: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    """sim (q, g) scores, positive (q, g) bool; rank of a query = how many non-positives score >= its best positive."""
    best_positive = np.where(positive, sim, -np.inf).max(axis=1, keepdims=True)
    rank = ((sim >= best_positive) & ~positive).sum(axis=1)
    return {f"r{k}": float((rank < k).mean()) if len(rank) else 0.0 for k in KS}


def retrieval_metrics(text_emb: np.ndarray, image_emb: np.ndarray, pairs: Sequence[Pair]) -> dict[str, Any]:
    """Recall@1/5/10 both ways and the modality gap.

    ``text_emb`` (n_pairs, d) follows ``pairs``; ``image_emb`` is either (n_pairs, d), following
    ``pairs`` (repeated pictures are folded), or (n_unique, d) in first-appearance order of the pairs' pictures.
    """
    shas = unique_images(pairs)
    if len(text_emb) != len(pairs):
        raise InvalidArgument(f"{len(text_emb)} text embeddings for {len(pairs)} pairs")
    if len(image_emb) == len(pairs) and len(shas) != len(pairs):
        first: dict[str, int] = {}
        for i, p in enumerate(pairs):
            first.setdefault(p.image_sha256, i)
        image_emb = image_emb[[first[sha] for sha in shas]]
    elif len(image_emb) != len(shas):
        raise InvalidArgument(f"{len(image_emb)} image embeddings for {len(pairs)} pairs with {len(shas)} pictures")
    if not pairs:
        zero = {f"r{k}": 0.0 for k in KS}
        return {"t2i": dict(zero), "i2t": dict(zero), "gap": 0.0}

    texts, images = unit(text_emb), unit(image_emb)
    column = {sha: j for j, sha in enumerate(shas)}
    owner = np.array([column[p.image_sha256] for p in pairs])
    positive_t2i = owner[:, None] == np.arange(len(shas))[None, :]  # (n_pairs, n_images)
    sim = texts @ images.T
    return {
        "t2i": recalls(sim, positive_t2i),
        "i2t": recalls(sim.T, positive_t2i.T),
        "gap": float(np.linalg.norm(images.mean(axis=0) - texts.mean(axis=0))),
    }


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mixed_metrics(
    text_emb: np.ndarray, image_emb: np.ndarray, pairs: Sequence[Pair], k: int = 10, calibrated: bool = False
) -> dict[str, float]:
    """Texts as queries over pictures and texts together: share of pictures in the top ``k`` and
    recall@k of the paired picture. ``image_emb`` is (n_unique, d) in ``unique_images`` order.
    ``calibrated``: pictures' scores shifted as a calibrated index shifts them (``index.modality_bias``
    of this gallery)."""
    texts, images = unit(text_emb), unit(image_emb)
    shas = unique_images(pairs)
    first_row: dict[str, int] = {}
    for i, p in enumerate(pairs):
        first_row.setdefault(p.text, i)
    if not first_row or not len(images):
        return {"image_share": 0.0, "r10": 0.0}
    distinct = list(first_row)  # one query and one gallery row per distinct text
    gallery_texts = texts[[first_row[t] for t in distinct]]
    gallery = np.concatenate([images, gallery_texts])  # (n_images + n_texts, d)
    column = {sha: j for j, sha in enumerate(shas)}
    own_pictures: dict[str, set[int]] = {}
    for p in pairs:
        own_pictures.setdefault(p.text, set()).add(column[p.image_sha256])
    sim = gallery_texts @ gallery.T  # (n_texts, n_images + n_texts)
    n_images = len(images)
    if calibrated:
        sim[:, :n_images] += modality_bias(images, gallery_texts)["text"]["image"]
    sim[np.arange(len(distinct)), n_images + np.arange(len(distinct))] = -np.inf  # a text does not find itself
    shares, hits = [], []
    for q, words in enumerate(distinct):
        top = np.argsort(-sim[q], kind="stable")[:k]
        shares.append(float((top < n_images).mean()))
        best_own = max(sim[q, j] for j in own_pictures[words])
        hits.append(float((sim[q] > best_own).sum() + ((sim[q] == best_own).sum() - 1) < k))
    return {"image_share": float(np.mean(shares)), "r10": float(np.mean(hits))}


def embedding_metrics(text_emb: np.ndarray, image_emb: np.ndarray, pairs: Sequence[Pair]) -> dict[str, Any]:
    """retrieval_metrics plus mixed search as is, centered, calibrated, and both; ``image_emb`` in ``unique_images`` order."""
    texts, images = unit(text_emb), unit(image_emb)
    metrics = retrieval_metrics(texts, images, pairs)
    if not len(texts) or not len(images):
        metrics.update({key: mixed_metrics(texts, images, pairs) for key in MIXED_VARIANTS.values()})
        return metrics
    texts_c, images_c = centered(texts, texts.mean(axis=0)), centered(images, images.mean(axis=0))
    for (centering, calibration), key in MIXED_VARIANTS.items():
        metrics[key] = mixed_metrics(texts_c if centering else texts, images_c if centering else images, pairs,
                                     calibrated=calibration)  # fmt: skip
    return metrics


def encoder_embeddings(encoder: Encoder, pairs: Sequence[Pair], pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(text embeddings following ``pairs``, picture embeddings following ``pixels``)."""
    return encoder.encode_texts([p.text for p in pairs]), encoder.encode_pixels(pixels)


def encoder_metrics(encoder: Encoder, pairs: Sequence[Pair], pixels: torch.Tensor) -> dict[str, Any]:
    """embedding_metrics of ``encoder``; ``pixels`` are the pairs' ``preprocess_images``."""
    return embedding_metrics(*encoder_embeddings(encoder, pairs, pixels), pairs)


def compare(
    base: Encoder, adapted: Encoder, pairs: Sequence[Pair], pixels: torch.Tensor, embeddings: dict | None = None
) -> dict[str, Any]:
    """The evaluation report: base vs adapter on held-out personal pairs, and on the generic set.
    ``embeddings``, when given, receives each encoder's (texts, pictures) of the held-out pairs."""
    from qualia.generic import generic_pixels, generic_retrieval, retention

    generic, captions = generic_pixels(base)
    report: dict[str, Any] = {"pairs": len(pairs)}
    for name, encoder in (("base", base), ("adapter", adapted)):
        texts, pictures = encoder_embeddings(encoder, pairs, pixels)
        if embeddings is not None:
            embeddings[name] = (texts, pictures)
        report[name] = embedding_metrics(texts, pictures, pairs)
        report[name]["generic"] = generic_retrieval(encoder, generic, captions)
    report["adapter"]["retention"] = retention(report["adapter"]["generic"], report["base"]["generic"])
    return report


def cue_precision(
    encoder: Encoder, pixels: torch.Tensor, labels: Sequence[str], cues: dict[str, frozenset[str]], k: int = 10
) -> dict[str, dict[str, Any]]:
    """For pictures whose look is known (``labels[i]`` names picture i's look, ``cues`` each look's
    visual cues): each look's name as a query over the pictures, precision@k of that look, and of each
    of its cues (a word meaning "grainy and warm" should find pictures that are both, not either)."""
    sim = encoder.encode_texts(list(cues)) @ encoder.encode_pixels(pixels).T  # (n_looks, n_pictures)
    report = {}
    for row, look in enumerate(cues):
        top = np.argsort(-sim[row], kind="stable")[:k]
        report[look] = {
            "precision": float(np.mean([labels[j] == look for j in top])),
            "cues": {c: float(np.mean([c in cues.get(labels[j], ()) for j in top])) for c in sorted(cues[look])},
        }
    return report


def held_out_artifacts(adapter_dir: Path) -> set[str]:
    """The artifacts this adapter's training held out, as its ``split.json`` lists them."""
    split_path = Path(adapter_dir) / SPLIT_FILE
    try:
        return set(json.loads(split_path.read_text())["val_artifacts"])
    except FileNotFoundError as e:
        raise CorruptArtifact(f"adapter {adapter_dir} has no {SPLIT_FILE}: cannot tell its held-out pairs") from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptArtifact(f"adapter {adapter_dir}: unreadable {SPLIT_FILE}") from e


def validation_pairs(ws: workspace.Workspace, profile: str, adapter_dir: Path) -> list[Pair]:
    """The profile's current pairs whose artifacts were held out when this adapter was trained."""
    held_out = held_out_artifacts(adapter_dir)
    with Corpus.open(ws, profile, readonly=True) as corpus:
        return [p for p in corpus_pairs(corpus) if p.artifact_id in held_out]


def evaluate_profile(
    ws: workspace.Workspace, profile: str, adapter_version: str | None = None, progress: bool = False
) -> dict[str, Any]:
    """``{"pairs": n, "base": metrics, "adapter": metrics}`` on the adapter's held-out pairs."""
    adapter_dir, meta = usable_adapter(ws, profile, adapter_version)
    pairs = validation_pairs(ws, profile, adapter_dir)
    backbone = load_backbone(meta["backbone"], meta.get("pretrained"))
    pixels, pairs, unreadable = preprocess_images(pairs, backbone)  # one read of each picture serves both encoders
    if not pairs:
        raise NotEnoughData(f"none of adapter {adapter_dir.name}'s held-out items are in {profile}'s corpus any more")
    adapted = Encoder.load(backbone, adapter_dir, progress=progress, trunk_cache=ws.trunk_cache_dir)
    base = Encoder(backbone.model, backbone, name="base", progress=progress, trunks=adapted.trunks)
    report = compare(base, adapted, pairs, pixels)
    return {**report, "images_unreadable": len(unreadable)}
