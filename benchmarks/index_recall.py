"""HNSW graphs against the exact scan on real embeddings (issue 9): recall@10 and time per query.

The vectors are what a backbone makes of real inputs, not random points: ``--pictures`` procedural
pictures and their captions (``qualia.procedural``), embedded with the stand-in (qualia-tiny), laid out as
``qualia index`` lays them out (one FAISS index per modality; rows numbered pictures first, then texts).
Queries are other captions and other pictures. For each kind of query and each search (any, any
calibrated as a calibrated index ranks it, image, text): the share of the exact top 10 that the graphs
(``qualia.index.modality_indexes`` over the threshold, the parameters it records) also return, and each
layout's milliseconds per query. The layout written before the split (one graph over both modalities,
a search within one modality scanning its rows exactly) is measured beside them, as ``single_graph``.

    .venv/bin/python benchmarks/index_recall.py --pictures 30000 --out index_recall.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from _report import emit, machine
from qualia import procedural
from qualia.backbone import load_backbone
from qualia.config import TINY_BACKBONE
from qualia.embed import Encoder
from qualia.index import PER_MODALITY, ProfileIndex, Rows, index_kind, modality_bias, modality_indexes, new_faiss_index

SEARCHES = {"any": ("any", False), "any_calibrated": ("any", True), "image": ("image", False), "text": ("text", False)}


def _embed(encoder: Encoder, seeds: range) -> tuple[np.ndarray, np.ndarray]:
    pictures, captions = [], []
    image_chunks, text_chunks = [], []
    for seed in seeds:
        picture, words = procedural.pair(random.Random(seed))
        pictures.append(picture)
        captions.append(words)
        if len(pictures) == 1024:
            image_chunks.append(encoder.encode_images(pictures))
            text_chunks.append(encoder.encode_texts(captions))
            pictures, captions = [], []
    if pictures:
        image_chunks.append(encoder.encode_images(pictures))
        text_chunks.append(encoder.encode_texts(captions))
    return np.concatenate(image_chunks), np.concatenate(text_chunks)


def _profile_index(indexes: dict[str, faiss.Index], kind: dict[str, Any], n_images: int, n_texts: int,
                   bias: dict[str, dict[str, float]], layout: str | None) -> ProfileIndex:  # fmt: skip
    n = n_images + n_texts
    manifest = {"dim": next(iter(indexes.values())).d, "count": n, **kind, "calibration": bias,
                "rows": {"image": [0, n_images], "text": [n_images, n]}, **({"layout": layout} if layout else {})}  # fmt: skip
    rows = [{"id": str(i), "modality": "image" if i < n_images else "text", "text": None, "image_url": None,
             "source": None, "source_url": None, "degree": None} for i in range(n)]  # fmt: skip
    return ProfileIndex(Path("benchmark"), manifest, indexes, Rows("\n".join(json.dumps(r) for r in rows).encode()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pictures", type=int, default=30000, help="pictures (and as many captions) in the index")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)  # one query at a time, as the service asks
    encoder = Encoder.load(load_backbone(TINY_BACKBONE))
    started = time.perf_counter()
    images, texts = _embed(encoder, range(10**7, 10**7 + args.pictures))
    query_images, query_texts = _embed(encoder, range(2 * 10**7, 2 * 10**7 + args.queries))
    embed_s = time.perf_counter() - started
    by_modality = {"image": np.ascontiguousarray(images, np.float32), "text": np.ascontiguousarray(texts, np.float32)}
    n_images, n_texts = len(images), len(texts)
    bias = modality_bias(images, texts)

    started = time.perf_counter()
    graph_files, graph_kind = modality_indexes(by_modality, hnsw_threshold=0)
    build_s = time.perf_counter() - started
    exact_files, exact_kind = modality_indexes(by_modality, hnsw_threshold=n_images + n_texts + 1)
    started = time.perf_counter()
    single = new_faiss_index(np.concatenate([images, texts]), index_kind(n_images + n_texts, hnsw_threshold=0))
    single_build_s = time.perf_counter() - started
    indexes = {
        "exact": _profile_index(exact_files, exact_kind, n_images, n_texts, bias, PER_MODALITY),
        "graphs": _profile_index(graph_files, graph_kind, n_images, n_texts, bias, PER_MODALITY),
        "single_graph": _profile_index({"any": single}, graph_kind, n_images, n_texts, bias, None),
    }
    result: dict[str, Any] = {"machine": machine(), "backbone": TINY_BACKBONE, "rows": n_images + n_texts,
                              "queries": args.queries, "hnsw": graph_kind["hnsw"], "embed_s": round(embed_s, 1),
                              "graphs_build_s": round(build_s, 1), "single_graph_build_s": round(single_build_s, 1)}  # fmt: skip
    for query_name, query_modality, queries in (("text_queries", "text", query_texts), ("picture_queries", "image", query_images)):
        for search_name, (modality, calibrated) in SEARCHES.items():
            overlap: dict[str, list[float]] = {"graphs": [], "single_graph": []}
            timings = dict.fromkeys(indexes, 0.0)
            for q in queries:
                found = {}
                for name, index in indexes.items():
                    t = time.perf_counter()
                    found[name] = {r["id"] for r in index.search(q, k=10, modality=modality,
                                                                  query_modality=query_modality if calibrated else None)}
                    timings[name] += time.perf_counter() - t
                for name in overlap:
                    overlap[name].append(len(found["exact"] & found[name]) / max(1, len(found["exact"])))
            result[f"{query_name}_{search_name}"] = {
                "recall_at_10": round(float(np.mean(overlap["graphs"])), 4),
                "single_graph_recall_at_10": round(float(np.mean(overlap["single_graph"])), 4),
                **{f"{name}_ms": round(1000 * timings[name] / len(queries), 3) for name in indexes},
            }
    print({k: v["recall_at_10"] for k, v in result.items() if isinstance(v, dict) and "recall_at_10" in v}, file=sys.stderr)
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
