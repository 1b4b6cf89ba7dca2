"""What an adapter changes for the sample person, by backbone weights and training variant (issue 7).

Crawls the bundled sample site once into a scratch workspace, then trains one adapter per variant on
the same corpus and split, and prints one JSON object: per variant the held-out evaluation (t2i/i2t
recall@1/5/10, gap, mixed search four ways, generic retrieval and retention), per-cue precision@10 on
held-out pictures, mixed search in the whole index as ``qualia index`` builds it, best epoch and wall
times; plus the corpus's pairs by source.

    .venv/bin/python benchmarks/persona_quality.py [--variants standin,random,tokens] [--out results.json]

Variants: ``standin`` (qualia-tiny with its shipped stand-in weights, LoRA), ``tokens`` (the same,
the adapter also training the input embeddings of the word pieces in the person's texts),
``textneg`` (the same, with the text-negatives term of ``train.contrastive_loss``), ``random``
(qualia-tiny's random init, LoRA). Any TrainSettings field can be set per run with
``--set name=value`` (applied to every variant).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _report import emit, machine
from crawler.run import crawl
from qualia.cli.demo import persona_figures
from qualia.config import TINY_BACKBONE, TINY_PRETRAINED, TrainSettings
from qualia.corpus import Corpus
from qualia.evaluate import validation_pairs
from qualia.index import ProfileIndex, image_id, index_profile, text_id
from qualia.pairs import corpus_summary
from qualia.search import ProfileSearcher
from qualia.train import train_profile
from qualia.workspace import Workspace
from samplesite import SampleSite
from samplesite.content import World

VARIANTS = {
    "standin": {"pretrained": TINY_PRETRAINED},
    "tokens": {"pretrained": TINY_PRETRAINED, "train_tokens": True},
    "textneg": {"pretrained": TINY_PRETRAINED, "text_negatives": 1.0},
    "random": {"pretrained": "random-seed0"},
    "random-textneg": {"pretrained": "random-seed0", "text_negatives": 1.0},
}


def whole_index_search(ws: Workspace, profile: str, adapter: Path, k: int = 10) -> dict:
    """What ``modality: any`` does in the index a person searches (every picture and text of the corpus,
    built the way ``qualia index`` chooses): each distinct held-out text as a query, its own row left
    out; share of pictures in the top ``k``, recall@k of its paired picture, and recall@k and @k/2 in a
    pictures-only search of that index."""
    searcher = ProfileSearcher.from_folder(ws, profile, index_profile(ws, profile, adapter.name))
    index: ProfileIndex = searcher.index
    own: dict[str, set[str]] = {}
    for pair in validation_pairs(ws, profile, adapter):
        own.setdefault(pair.text, set()).add(image_id(pair.image_sha256))
    shares, mixed_hits, picture_hits, picture_hits_5 = [], [], [], []
    for words, pictures in own.items():
        query = index.query_vector(searcher.encoder.encode_texts([words])[0], "text")
        found = [r for r in index.search(query, k + 1, "any", query_modality="text") if r["id"] != text_id(words)][:k]
        shares.append(sum(r["modality"] == "image" for r in found) / k)
        mixed_hits.append(any(r["id"] in pictures for r in found))
        ranked = [r["id"] for r in index.search(query, k, "image")]
        picture_hits.append(any(i in pictures for i in ranked))
        picture_hits_5.append(any(i in pictures for i in ranked[: k // 2]))
    return {
        "centering": bool(index.manifest["centering"]),
        "calibration": bool(index.manifest["calibration"]),
        "queries": len(own),
        "pictures": index.manifest["count_by_modality"]["image"],
        "texts": index.manifest["count_by_modality"]["text"],
        "image_share": sum(shares) / len(shares),
        "r10": sum(mixed_hits) / len(mixed_hits),
        "picture_only_r10": sum(picture_hits) / len(picture_hits),
        "picture_only_r5": sum(picture_hits_5) / len(picture_hits_5),  # the most a half-pictures top 10 can hold
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="standin,random,tokens")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--workspace", type=Path, help="reuse (or keep) the crawl in this folder")
    args = parser.parse_args()
    ws = Workspace.at(args.workspace or tempfile.mkdtemp(prefix="qualia-persona-"))
    profile = "persona"
    base_file = ws.root / "site_base.txt"
    crawl_s = 0.0
    if base_file.is_file() and ws.corpus_path(profile).is_file():
        site_base, world = base_file.read_text().strip(), World()  # the world is the same in every process
    else:
        with SampleSite() as site:
            t = time.perf_counter()
            crawl(ws, profile, substack=[site.substack_handle], pinterest=[site.pinterest_username],
                  depth=2, delay=0.0, progress=False, urls=site.env())
            crawl_s = time.perf_counter() - t
            site_base, world = site.base_url, site.world
        base_file.write_text(site_base)
    with Corpus.open(ws, profile, readonly=True) as corpus:
        summary = corpus_summary(corpus)
    results = {
        "machine": machine(),
        "corpus": {k: summary[k] for k in ("items", "images", "pairs", "pairs_by_text_source", "pairs_by_degree")},
        "crawl_s": round(crawl_s, 1),
        "variants": {},
    }
    for name in [v for v in args.variants.split(",") if v]:
        extra = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
        settings = TrainSettings(backbone=TINY_BACKBONE, **{**VARIANTS[name], **extra})
        t = time.perf_counter()
        adapter = train_profile(ws, profile, settings)
        seconds = time.perf_counter() - t
        meta = json.loads((adapter / "qualia.json").read_text())
        results["variants"][name] = {
            "settings": {**VARIANTS[name], **extra},
            "train_s": round(seconds, 1),
            "best_epoch": meta["best_epoch"],
            "epochs_run": meta["epochs_run"],
            "eval": json.loads((adapter / "metrics.json").read_text()),
            "cues": persona_figures(ws, profile, adapter, site_base, world),
            "whole_index": whole_index_search(ws, profile, adapter),
        }
        print(f"{name}: {seconds:.0f} s", file=sys.stderr)
    return emit(results, args.out)


if __name__ == "__main__":
    sys.exit(main())
