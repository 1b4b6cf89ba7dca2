"""Incremental and resumable crawls (issue 11, item 7).

A second crawl of an unchanged world asks for little: detail pages already read, one-page expansions
and the later pages of feeds read to their end are skipped (``crawl_done`` in the corpus), pictures
already stored are not fetched. A crawl killed with SIGKILL at any point, then run again, ends with
the corpus one uninterrupted crawl makes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qualia.corpus import Corpus
from qualia.errors import NotFound
from qualia.workspace import Workspace
from samplesite import SampleSite
from tests.helpers import ROOT
from tests.test_crawler import counts, run_crawl

pytestmark = pytest.mark.slow


def crawl_args(site: SampleSite, profile: str, depth: int) -> list[str]:
    return [sys.executable, "-m", "crawler", profile, "--substack", site.substack_handle, "--pinterest",
            site.pinterest_username, "--depth", str(depth), "--delay", "0"]


def test_a_second_crawl_asks_for_a_tenth_at_most_and_still_finds_what_is_new(tmp_path: Path) -> None:
    with SampleSite() as site:
        start = len(site.requests)
        first = run_crawl(site, tmp_path, "again")
        middle = len(site.requests)
        second = run_crawl(site, tmp_path, "again")
        asked = len(site.requests) - middle
        assert counts(tmp_path, "again") == site.expected_counts(2)
        assert second["items_new"] == 0 and second["images_stored"] == 0
        assert asked <= 0.10 * (middle - start), (asked, middle - start)
        assert first["requests"] == middle - start and second["requests"] == asked

        # the world changes: a new post at the front of her publication is found, and only it is read
        pub = site.world.publications[2001]
        template = site.world.publications[2007].posts[0]  # from a publication the crawl never reaches
        new = dataclasses.replace(template, id=2001999, publication_id=2001, slug="a-new-letter")
        pub.posts.insert(0, new)
        third = run_crawl(site, tmp_path, "again")
        assert third["items_new"] == 1 and third["images_stored"] == 1 + len(new.figures)
        with Corpus.open(Workspace(tmp_path), "again", readonly=True) as c:
            assert c.item("substack:post:2001999")["title"] == new.title


def _progress(ws: Workspace, profile: str) -> int:
    try:
        with Corpus.open(ws, profile, readonly=True) as c:
            got = c.counts()
        return sum(got["items"].values()) + got["images"]
    except (NotFound, sqlite3.Error):  # not created yet, or busy
        return 0


def _snapshot(home: Path, profile: str) -> dict[str, object]:
    with Corpus.open(Workspace(home), profile, readonly=True) as c:
        db = c.db
        return {
            "counts": counts(home, profile),
            "items": sorted(r[0] for r in db.execute("SELECT id FROM items")),
            "edges": sorted(tuple(r) for r in db.execute("SELECT src, dst, relation FROM edges")),
            "refs": sorted(tuple(r) for r in db.execute("SELECT item_id, url FROM image_refs")),
            "hashes": sorted(r[0] for r in db.execute("SELECT sha256 FROM images")),
            # stored pictures; a kill mid-write may leave a temporary ".<name>+host+pid+….tmp" (qualia gc clears it)
            "files": len([p for p in (home / "images").rglob("*") if p.is_file() and not p.name.startswith(".")]),
        }


def test_killed_at_five_points_and_rerun_ends_as_one_uninterrupted_crawl(tmp_path: Path) -> None:
    with SampleSite() as site:
        reference = tmp_path / "reference"
        run_crawl(site, reference, "k", depth=1)
        want = _snapshot(reference, "k")
        assert want["counts"] == site.expected_counts(1) and want["files"] == len(want["hashes"])
        total = sum(want["counts"]["items"].values()) + want["counts"]["images"]
        killed_at = []
        for n, share in enumerate((0.02, 0.2, 0.4, 0.6, 0.85)):  # how far the crawl got when it was killed
            home = tmp_path / f"killed-{n}"
            ws = Workspace(home)
            site.latency = 0.02
            proc = subprocess.Popen(crawl_args(site, "k", 1), env={**os.environ, "QUALIA_HOME": str(home), **site.env()},
                                    cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 120
            while _progress(ws, "k") < share * total and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            site.latency = 0.0
            killed_at.append(_progress(ws, "k"))
            run_crawl(site, home, "k", depth=1)
            assert _snapshot(home, "k") == want, f"killed at {killed_at[-1]} of {total}"
        print(f"killed at {killed_at} of {total} items + pictures")
        assert killed_at == sorted(killed_at) and killed_at[-1] < total  # five different points, none at the end
