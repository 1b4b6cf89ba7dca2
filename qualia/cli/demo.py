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
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from qualia.cli.format import format_counts, format_eval, format_results, say
from qualia.workspace import Workspace

log = logging.getLogger(__name__)


def persona_figures(ws: Workspace, profile: str, adapter_dir: Path, site_base: str, world: Any) -> dict[str, Any]:
    """Per-cue precision@10 on the adapter's held-out pictures, base vs adapter: each of the sample
    person's style words as a query; the sample site knows every picture's style."""
    from qualia.backbone import load_backbone
    from qualia.corpus import Corpus
    from qualia.embed import Encoder
    from qualia.evaluate import cue_precision, preprocess_images, unique_images, validation_pairs
    from qualia.lora import read_adapter_meta
    from samplesite import STYLE_CUES

    style_of: dict[str, str] = {}
    with Corpus.open(ws, profile, readonly=True) as corpus:
        for url, sha in corpus.db.execute("SELECT url, sha256 FROM image_urls"):
            picture = world.pictures.get(url[len(site_base):]) if url.startswith(site_base) else None
            if picture is not None:
                style_of[sha] = picture.style
    pairs = [p for p in validation_pairs(ws, profile, adapter_dir) if p.image_sha256 in style_of]
    meta = read_adapter_meta(adapter_dir)
    backbone = load_backbone(meta["backbone"], meta.get("pretrained"))
    pixels, pairs, _ = preprocess_images(pairs, backbone)
    labels = [style_of[sha] for sha in unique_images(pairs)]
    return {
        "pictures": len(labels),
        "base": cue_precision(Encoder.load(backbone), pixels, labels, STYLE_CUES),
        "adapter": cue_precision(Encoder.load(backbone, adapter_dir), pixels, labels, STYLE_CUES),
    }


def format_cues(figures: dict[str, Any]) -> str:
    lines = [f"per-cue precision@10 over {figures['pictures']} held-out pictures (base → adapter):"]
    for look, after in figures["adapter"].items():
        before = figures["base"][look]
        cues = ", ".join(f"{c} {before['cues'][c]:.1f}→{v:.1f}" for c, v in after["cues"].items())
        lines.append(f"  {look:<14} {before['precision']:.1f} → {after['precision']:.1f}   ({cues})")
    return "\n".join(lines)


def what_changed(report: dict[str, Any], mixed: str) -> str:
    """The demo's last sentence: what the adapter changed, in plain words (``mixed``: the evaluation
    key of mixed search done the way the index does it, ``index.mixed_key``)."""
    base, adapter = report["base"], report["adapter"]
    ratio = adapter["gap"] / base["gap"] if base["gap"] else 1.0
    gap = ("gap halved" if 0.4 <= ratio <= 0.6 else f"gap cut by {1 - ratio:.0%}" if ratio < 1
           else f"gap grew by {ratio - 1:.0%}")
    pictures = round(10 * adapter[mixed]["image_share"])
    return (f"text→image recall@10 {base['t2i']['r10']:.2f} → {adapter['t2i']['r10']:.2f}, {gap} "
            f"({base['gap']:.2f} → {adapter['gap']:.2f}), generic retrieval kept at {adapter.get('retention', 1.0):.2f}, "
            f"pictures now {pictures} of the top 10 for a text query")


def personal_searches(ws: Workspace, profile: str, searcher: Any, queries: list[str],
                      k: int = 5) -> tuple[list[dict[str, Any]], str]:  # fmt: skip
    """Each query over the profile's pictures: (the answers, each result with its ``file`` beside
    ``image_url`` and ``source_url``; the text shown). The text names each picture's file in the
    workspace: the sample site the pictures came from is gone once the demo ends."""
    from qualia.search import with_files

    answers, shown = [], []
    for query in queries:
        results = with_files(ws, profile, searcher.search_text(query, k=k, modality="image"))
        answers.append({"query": query, "results": results})
        shown.append(f'\n"{query}"\n{format_results(results)}')
    return answers, "".join(shown)


def run_demo(ws: Workspace, profile: str = "demo", epochs: int | None = None, as_json: bool = False) -> int:
    from crawler.run import crawl
    from qualia.config import TINY_BACKBONE, TrainSettings
    from qualia.corpus import Corpus
    from qualia.index import describe_mixed, index_profile, mixed_key
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
    say(as_json, f"qualia demo: workspace {ws.root}, profile {profile!r}\n"
                 f"The backbone is {TINY_BACKBONE}, an offline stand-in for a real CLIP: a small model pre-trained "
                 "by the project on generated pictures of colours, patterns and shapes. It knows generic visual "
                 "words, none of this person's own.")

    with SampleSite() as site:
        say(as_json, f"\n[1/4] crawling the sample site at {site.base_url} "
                     f"(substack {site.substack_handle!r}, pinterest {site.pinterest_username!r}, depth 2)")
        t = time.perf_counter()
        crawl(ws, profile, substack=[site.substack_handle], pinterest=[site.pinterest_username],
              depth=2, delay=0.0, progress=progress, urls=site.env())
        timings["crawl_s"] = time.perf_counter() - t
        queries = list(site.queries)
        site_base, world = site.base_url, site.world
    with Corpus.open(ws, profile, readonly=True) as corpus:
        counts = corpus_summary(corpus)
    say(as_json, format_counts(counts))
    say(as_json, f"Collected {sum(counts['items'].values())} items and {counts['images']} pictures from her posts, "
                 f"pins and what they link to, making {counts['pairs']} text–picture pairs "
                 f"({', '.join(f'{n} from {s}' for s, n in counts['pairs_by_text_source'].items())}).")

    say(as_json, f"\n[2/4] training a LoRA adapter over the frozen {TINY_BACKBONE} stand-in")
    t = time.perf_counter()
    overrides: dict[str, Any] = {"epochs": epochs} if epochs else {}
    adapter = train_profile(ws, profile, TrainSettings(backbone=TINY_BACKBONE, **overrides), progress=progress)
    report = json.loads((adapter / "metrics.json").read_text())
    meta = json.loads((adapter / "qualia.json").read_text())
    timings["train_s"] = time.perf_counter() - t
    say(as_json, f"adapter {adapter.name}\n{format_eval(report)}")
    cues = persona_figures(ws, profile, adapter, site_base, world)
    say(as_json, format_cues(cues))
    say(as_json, f"Trained {meta['epochs_run']} epochs and kept epoch {meta['best_epoch']}, the best on "
                 f"{report['pairs']} held-out pairs.")

    say(as_json, "\n[3/4] indexing the corpus with backbone + adapter")
    t = time.perf_counter()
    index = index_profile(ws, profile, adapter.name, progress=progress)
    manifest = json.loads((index / "manifest.json").read_text())
    timings["index_s"] = time.perf_counter() - t
    say(as_json, f"Indexed {manifest['count_by_modality']['image']} pictures and {manifest['count_by_modality']['text']} "
                 f"texts ({describe_mixed(manifest)}, as the evaluation advised).")

    say(as_json, "\n[4/4] searching with the person's own words")
    searcher = ProfileSearcher.load(ws, profile)
    answers, shown = personal_searches(ws, profile, searcher, queries)
    say(as_json, shown)
    mixed = searcher.search_text(queries[0], k=10, modality="any")
    say(as_json, f'\n"{queries[0]}" over pictures and texts together: '
                 f"{sum(r['modality'] == 'image' for r in mixed)} pictures in the top 10.")

    timings["total_s"] = time.perf_counter() - started
    say(as_json, "\n" + "  ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    say(as_json, "\nWhat the adapter changed: " + what_changed(report, mixed_key(manifest)) + ".")
    page = f"http://127.0.0.1:8000/?{urlencode({'profile': profile, 'q': queries[0]})}"
    say(as_json, f"\nNext: `QUALIA_HOME={ws.root} qualia serve` and open {page} (the API: /docs)")
    if as_json:
        sys.stdout.write(json.dumps({"profile": profile, "corpus": counts, "eval": report, "adapter": adapter.name,
                                     "index": index.name, "queries": answers, "cues": cues, "timings": timings}) + "\n")
    return 0
