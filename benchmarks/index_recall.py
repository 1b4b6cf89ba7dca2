"""HNSW against the exact scan on real embeddings (issue 9): recall@10 and time per query.

The vectors are what a backbone makes of real inputs, not random points: ``--pictures`` procedural
pictures and their captions (``qualia.procedural``), embedded with the stand-in (qualia-tiny), laid out as
``qualia index`` lays them out (pictures, then texts). Queries are other captions (texts searching
pictures and texts) and other pictures. For each modality filter (any, image, text): the share of the
exact top 10 that the HNSW index (``qualia.index.new_faiss_index``, the parameters it records) also
returns, and each index's milliseconds per query.

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
from qualia.index import Rows, ProfileIndex, new_faiss_index


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


def _index(vectors: np.ndarray, n_images: int, threshold: int) -> ProfileIndex:
    index, kind = new_faiss_index(vectors, threshold)
    manifest = {"dim": vectors.shape[1], "count": len(vectors), **kind,
                "rows": {"image": [0, n_images], "text": [n_images, len(vectors)]}}  # fmt: skip
    rows = [{"id": str(i), "modality": "image" if i < n_images else "text", "text": None, "image_url": None,
             "source": None, "source_url": None, "degree": None} for i in range(len(vectors))]
    return ProfileIndex(Path("benchmark"), manifest, index, Rows("\n".join(json.dumps(r) for r in rows).encode()))


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
    vectors = np.ascontiguousarray(np.concatenate([images, texts]), dtype=np.float32)
    started = time.perf_counter()
    graph = _index(vectors, len(images), threshold=0)
    build_s = time.perf_counter() - started
    exact = _index(vectors, len(images), threshold=len(vectors) + 1)
    result: dict[str, Any] = {"machine": machine(), "backbone": TINY_BACKBONE, "rows": len(vectors),
                              "hnsw": graph.manifest["hnsw"], "embed_s": round(embed_s, 1), "hnsw_build_s": round(build_s, 1)}  # fmt: skip
    for query_name, queries in (("text_queries", query_texts), ("picture_queries", query_images)):
        for modality in ("any", "image", "text"):
            overlap, timings = [], {"exact": 0.0, "hnsw": 0.0}
            for q in queries:
                found = {}
                for name, index in (("exact", exact), ("hnsw", graph)):
                    t = time.perf_counter()
                    found[name] = {r["id"] for r in index.search(q, k=10, modality=modality)}
                    timings[name] += time.perf_counter() - t
                overlap.append(len(found["exact"] & found["hnsw"]) / max(1, len(found["exact"])))
            result[f"{query_name}_{modality}"] = {
                "recall_at_10": round(float(np.mean(overlap)), 4),
                "exact_ms": round(1000 * timings["exact"] / len(queries), 3),
                "hnsw_ms": round(1000 * timings["hnsw"] / len(queries), 3),
            }
    print({k: v["recall_at_10"] for k, v in result.items() if isinstance(v, dict) and "recall_at_10" in v}, file=sys.stderr)
    return emit(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
