"""`qualia demo`: the whole job, offline, against the bundled sample site.

sample site (127.0.0.1, free port) -> crawl (real Scrapy) -> train (qualia-tiny + LoRA) -> eval
-> index -> a few personal queries. The demo profile is rebuilt from scratch on every run, because the
sample site's URLs carry a new port each time and would otherwise pile up as new image URLs.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from typing import Any

from qualia.cli.format import format_counts, format_eval, format_results, say
from qualia.workspace import Workspace

log = logging.getLogger(__name__)


def run_demo(ws: Workspace, profile: str = "demo", epochs: int | None = None, as_json: bool = False) -> int:
    from crawler.run import crawl
    from qualia.config import TINY_BACKBONE, TrainSettings
    from qualia.corpus import Corpus
    from qualia.index import index_profile
    from qualia.pairs import corpus_summary
    from qualia.search import ProfileSearcher
    from qualia.train import train_profile
    from samplesite import SampleSite

    timings: dict[str, float] = {}
    started = time.perf_counter()
    progress = sys.stderr.isatty()
    folder = ws.profile_dir(profile)
    if folder.exists():
        shutil.rmtree(folder)
    say(as_json, f"qualia demo: workspace {ws.root}, profile {profile!r}")

    with SampleSite() as site:
        say(as_json, f"\n[1/4] crawling the sample site at {site.base_url} "
                     f"(substack {site.substack_handle!r}, pinterest {site.pinterest_username!r}, depth 2)")
        t = time.perf_counter()
        crawl(ws, profile, substack=[site.substack_handle], pinterest=[site.pinterest_username],
              depth=2, delay=0.0, progress=progress, urls=site.env())
        timings["crawl_s"] = time.perf_counter() - t
        queries = list(site.queries)
    with Corpus.open(ws, profile, readonly=True) as corpus:
        counts = corpus_summary(corpus)
    say(as_json, format_counts(counts))

    say(as_json, f"\n[2/4] training a LoRA adapter over the frozen {TINY_BACKBONE} backbone")
    t = time.perf_counter()
    overrides: dict[str, Any] = {"epochs": epochs} if epochs else {}
    adapter = train_profile(ws, profile, TrainSettings(backbone=TINY_BACKBONE, **overrides), progress=progress)
    report = json.loads((adapter / "metrics.json").read_text())
    timings["train_s"] = time.perf_counter() - t
    say(as_json, f"adapter {adapter.name}\n{format_eval(report)}")

    say(as_json, "\n[3/4] indexing the corpus with backbone + adapter")
    t = time.perf_counter()
    index = index_profile(ws, profile, adapter.name, progress=progress)
    manifest = json.loads((index / "manifest.json").read_text())
    timings["index_s"] = time.perf_counter() - t
    say(as_json, f"index {index.name}: {manifest['count']} vectors of dim {manifest['dim']}")

    say(as_json, "\n[4/4] searching with the person's own words")
    searcher = ProfileSearcher.load(ws, profile)
    answers = []
    for query in queries:
        results = searcher.search_text(query, k=5, modality="image")
        answers.append({"query": query, "results": results})
        say(as_json, f'\n"{query}"\n{format_results(results)}')

    timings["total_s"] = time.perf_counter() - started
    say(as_json, "\n" + "  ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    say(as_json, f"\nNext: `QUALIA_HOME={ws.root} qualia serve` and open http://127.0.0.1:8000/docs")
    if as_json:
        sys.stdout.write(json.dumps({"profile": profile, "corpus": counts, "eval": report, "adapter": adapter.name,
                                     "index": index.name, "queries": answers, "timings": timings}) + "\n")
    return 0
