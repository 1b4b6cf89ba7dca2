"""How fast the crawler fills a corpus, and what a second crawl costs (issue 11, item 8).

Serves a generated world (the sample site at ``--scale``; 6 gives 2,044 items and 3,058 pictures at
depth 2) on 127.0.0.1, crawls it with delays off in a process of its own, and crawls it again.
Prints one JSON object: items/s, pictures/s, the crawl process's peak resident memory, requests, and
whether the corpus holds exactly what the world implies.

    .venv/bin/python benchmarks/crawl_speed.py [--scale 6] [--depth 2] [--out results.json]

The site runs in this process and shares the machine's cores with the crawl: figures are for both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import emit, machine
from qualia.corpus import Corpus
from qualia.workspace import Workspace
from samplesite import SampleSite

ROOT = Path(__file__).resolve().parents[1]


def crawl_once(site: SampleSite, home: Path, depth: int) -> dict[str, float]:
    before = len(site.requests)
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "crawler", "bench", "--substack", site.substack_handle, "--pinterest",
         site.pinterest_username, "--depth", str(depth), "--delay", "0"],
        env={**os.environ, "QUALIA_HOME": str(home), **site.env()}, cwd=ROOT, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"crawl failed: {out.stderr[-2000:]}")
    stats = json.loads(out.stdout)
    return {"seconds": round(seconds, 2), "items_new": stats["items_new"], "pictures_stored": stats["images_stored"],
            "requests": len(site.requests) - before, "errors": stats["errors"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=6, help="world size (1 is the tests' world)")
    parser.add_argument("--depth", type=int, choices=(1, 2), default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    with SampleSite(scale=args.scale) as site, tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch)
        expected = site.expected_counts(args.depth)
        first = crawl_once(site, home, args.depth)
        second = crawl_once(site, home, args.depth)
        with Corpus.open(Workspace(home), "bench", readonly=True) as corpus:
            got = corpus.counts()
    items = sum(expected["items"].values())
    complete = all(got[k] == expected[k] for k in ("items", "by_degree", "by_kind", "images", "image_refs", "edges"))
    return emit({
        "benchmark": "crawl_speed", "machine": machine(), "scale": args.scale, "depth": args.depth,
        "world": {"items": items, "pictures": expected["images"], "image_refs": expected["image_refs"]},
        "corpus_matches_world": complete,
        "first": {**first, "items_per_s": round(first["items_new"] / first["seconds"], 1),
                  "pictures_per_s": round(first["pictures_stored"] / first["seconds"], 1)},
        "second": second,
        "second_requests_share": round(second["requests"] / first["requests"], 3),
        # ru_maxrss of the waited-for children (the two crawl processes): the larger peak, KiB on Linux
        "crawl_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }, args.out)


if __name__ == "__main__":
    sys.exit(main())
