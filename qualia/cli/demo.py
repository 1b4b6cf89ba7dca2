"""`qualia demo`: the whole job, offline, against the bundled sample site.

sample site (127.0.0.1, free port) -> crawl (real Scrapy) -> train (qualia-tiny + LoRA) -> eval
-> index -> a few personal queries. The demo profile is rebuilt from scratch on every run, because the
sample site's URLs carry a new port each time and would otherwise pile up as new image URLs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from typing import Any

from qualia import workspace
from qualia.cli.main import build_profile_index, corpus_counts, format_counts, format_eval, format_results

log = logging.getLogger(__name__)


def _say(as_json: bool, text: str) -> None:
    # In --json mode stdout carries exactly one object, so narration goes to stderr.
    print(text, file=sys.stderr if as_json else sys.stdout, flush=True)


def run_demo(profile: str = "demo", epochs: int | None = None, as_json: bool = False) -> int:
    from crawler.run import crawl
    from qualia.samplesite import SampleSite
    from qualia.search import ProfileSearcher
    from qualia.train import TrainSettings, train_profile

    workspace.check_profile_name(profile)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    progress = sys.stderr.isatty()
    folder = workspace.profile_dir(profile)
    if folder.exists():
        shutil.rmtree(folder)
    _say(as_json, f"qualia demo: workspace {workspace.home()}, profile {profile!r}")

    with SampleSite() as site:
        os.environ.update(site.env())
        _say(as_json, f"\n[1/4] crawling the sample site at {site.base_url} "
                      f"(substack {site.substack_handle!r}, pinterest {site.pinterest_username!r}, depth 2)")
        t = time.perf_counter()
        crawl(profile, substack=[site.substack_handle], pinterest=[site.pinterest_username],
              depth=2, delay=0.0, progress=progress)
        timings["crawl_s"] = time.perf_counter() - t
        queries = list(site.queries)
    counts = corpus_counts(profile)
    _say(as_json, format_counts(counts))

    _say(as_json, "\n[2/4] training a LoRA adapter over the frozen qualia-tiny backbone")
    t = time.perf_counter()
    overrides: dict[str, Any] = {"epochs": epochs} if epochs else {}
    adapter = train_profile(profile, TrainSettings(backbone="qualia-tiny", **overrides), progress=progress)
    report = json.loads((adapter / "metrics.json").read_text())
    timings["train_s"] = time.perf_counter() - t
    _say(as_json, f"adapter {adapter.name}\n{format_eval(report)}")

    _say(as_json, "\n[3/4] indexing the corpus with backbone + adapter")
    t = time.perf_counter()
    index = build_profile_index(profile, adapter.name)
    manifest = json.loads((index / "manifest.json").read_text())
    timings["index_s"] = time.perf_counter() - t
    _say(as_json, f"index {index.name}: {manifest['count']} vectors of dim {manifest['dim']}")

    _say(as_json, "\n[4/4] searching with the person's own words")
    searcher = ProfileSearcher.load(profile)
    answers = []
    for query in queries:
        results = searcher.search_text(query, k=5, modality="image")
        answers.append({"query": query, "results": results})
        _say(as_json, f'\n"{query}"\n{format_results(results)}')

    timings["total_s"] = time.perf_counter() - started
    _say(as_json, "\n" + "  ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    _say(as_json, f"\nNext: `QUALIA_HOME={workspace.home()} qualia serve` and open http://127.0.0.1:8000/docs")
    if as_json:
        sys.stdout.write(json.dumps({"profile": profile, "corpus": counts, "eval": report, "adapter": adapter.name,
                                     "index": index.name, "queries": answers, "timings": timings}) + "\n")
    return 0
