"""What an adapter changes for the sample person, by backbone weights and training variant (issue 7).

Crawls the bundled sample site once into a scratch workspace, then trains one adapter per variant on
the same corpus and split, and prints one JSON object: per variant the held-out evaluation (t2i/i2t
recall@1/5/10, gap, mixed search as is and centered, generic retrieval and retention), per-cue
precision@10 on held-out pictures, best epoch and wall times; plus the corpus's pairs by source.

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
import platform
import sys
import tempfile
import time
from pathlib import Path

from crawler.run import crawl
from qualia.cli.demo import persona_figures
from qualia.config import TINY_BACKBONE, TINY_PRETRAINED, TrainSettings
from qualia.corpus import Corpus
from qualia.pairs import corpus_summary
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
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cores": 2},
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
        }
        print(f"{name}: {seconds:.0f} s", file=sys.stderr)
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
