"""Faults survived (issue 11, item 1): the real Scrapy crawl against a sample site that misbehaves.

Each test switches one fault on (``SampleSite.fail_next`` / ``fault_next`` / ``disallow``), crawls one
source at depth 1 in a subprocess, and checks three things: the crawl finishes, each problem is
logged once (one line naming the URL, no traceback), and every good item is kept (the corpus equals
what the site implies, less exactly what the fault took away).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from samplesite import SampleSite
from tests.helpers import ROOT, open_corpus

pytestmark = pytest.mark.slow


def crawl(site: SampleSite, home: Path, source: str, profile: str = "faulty") -> tuple[dict[str, Any], list[str]]:
    """One depth-1 crawl of one source: (its stats, the lines it logged)."""
    name = site.substack_handle if source == "substack" else site.pinterest_username
    out = subprocess.run(
        [sys.executable, "-m", "crawler", profile, f"--{source}", name, "--depth", "1", "--delay", "0"],
        env={**os.environ, "QUALIA_HOME": str(home), **site.env()}, cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    return json.loads(out.stdout), out.stderr.splitlines()


def stored(home: Path) -> dict[str, Any]:
    with open_corpus(home, "faulty") as c:
        got = c.counts()
    return {key: got[key] for key in ("items", "by_degree", "by_kind", "images", "image_urls", "image_refs", "edges")}


def mentions(lines: list[str], text: str) -> list[str]:
    return [line for line in lines if text in line]


def test_429_waits_as_long_as_retry_after_says(site: SampleSite, tmp_path: Path) -> None:
    path = "/pub/smallkitchens/api/v1/archive"
    site.fail_next(path, 429, times=1, retry_after=2)
    stats, lines = crawl(site, tmp_path, "substack")
    assert stored(tmp_path) == site.expected_counts(1, ("substack",))
    asked = [t for t, p in site.timeline if p.startswith(path) and "offset=0" in p]
    assert asked[-1] - asked[-2] >= 2.0  # the second ask came after the wait the site asked for
    assert len(mentions(lines, "HTTP 429")) == 1 and stats["retries"] >= 1


def test_a_burst_of_5xx_is_retried_and_a_page_that_never_heals_costs_only_itself(site: SampleSite,
                                                                                 tmp_path: Path) -> None:
    world = site.world
    lost = world.publications[2003].posts[4]
    site.fail_next("/pub/quiethours/api/v1/posts/", 503, times=6)  # six different posts answer 503 once
    site.fail_next(f"/api/v1/posts/{lost.slug}", 500, times=50)  # this one never recovers
    stats, lines = crawl(site, tmp_path, "substack")
    expected = site.expected_counts(1, ("substack",))
    got = stored(tmp_path)
    # the post itself stays (its listing said enough); only its body's pictures are lost
    assert got["items"] == expected["items"] and got["image_refs"] == expected["image_refs"] - len(lost.figures)
    gave_up = mentions(lines, f"skipping {site.pub_url(world.publications[2003])}/api/v1/posts/{lost.slug}")
    assert len(gave_up) == 1 and "HTTP 500 (after 4 retries)" in gave_up[0]
    assert len(mentions(lines, lost.slug)) == 2  # the first retry, then giving up: never once per attempt
    assert stats["retries"] >= 6 + 4
    with open_corpus(tmp_path, "faulty") as c:
        assert c.item(f"substack:post:{lost.id}")["title"] == lost.title


@pytest.mark.parametrize("kind", ["drop", "cut"])
def test_dropped_connections_are_retried(site: SampleSite, tmp_path: Path, kind: str) -> None:
    site.fault_next("BoardFeedResource", kind, times=3)
    site.fault_next("/pinimg/originals/", kind, times=2)
    stats, lines = crawl(site, tmp_path, "pinterest")
    assert stored(tmp_path) == site.expected_counts(1, ("pinterest",))
    # Twisted itself re-sends a GET once when a reused connection drops before any answer; what it
    # does not absorb is retried by the crawl, and each such URL is said once
    said = mentions(lines, "asking again")
    assert 1 <= len(said) <= 5 and stats["retries"] == len(said)
    assert all("dropped" in line or "cut short" in line for line in said)


@pytest.mark.parametrize("kind", ["truncate", "corrupt", "html"])
def test_json_that_is_cut_garbled_or_an_html_page_is_asked_for_again(site: SampleSite, tmp_path: Path,
                                                                     kind: str) -> None:
    site.fault_next("/pub/quiethours/api/v1/archive", kind, times=1)
    site.fault_next("/api/v1/posts/", kind, times=2)
    stats, lines = crawl(site, tmp_path, "substack")
    assert stored(tmp_path) == site.expected_counts(1, ("substack",))
    said = mentions(lines, "asking again")
    assert len(said) == 3 and stats["errors"] == 0
    if kind == "html":
        assert all("an HTML page where JSON was expected" in line for line in said)


def test_an_html_page_that_never_becomes_json_is_given_up_on_once(site: SampleSite, tmp_path: Path) -> None:
    site.fault_next("UserPinsResource", "html", times=50)
    stats, lines = crawl(site, tmp_path, "pinterest")
    # her pins all sit on boards too: the boards' feeds still bring every one of them; her newest 25
    # pins come from her RSS feed as well (tests/test_crawl_rss.py)
    expected, got = site.expected_counts(1, ("pinterest",)), stored(tmp_path)
    assert got["items"] == expected["items"] and got["images"] >= expected["images"]
    assert got["edges"] < expected["edges"]  # the "pinned" edges of all but the feed's 25 pins are missing
    assert len(mentions(lines, "skipping")) == 1 and "HTML page" in mentions(lines, "skipping")[0]
    assert len(mentions(lines, "feed.rss instead")) == 1
    assert stats["errors"] == 1


def test_bad_pictures_cost_only_themselves(site: SampleSite, tmp_path: Path) -> None:
    world = site.world
    victims = {kind: world.pins[world.own_pin_ids[30 + k]].orig_url
               for k, kind in enumerate(("truncate", "corrupt", "oversize", "bomb"))}
    for kind, path in victims.items():
        site.fault_next(path, kind, times=1)
    stats, lines = crawl(site, tmp_path, "pinterest")
    expected, got = site.expected_counts(1, ("pinterest",)), stored(tmp_path)
    assert got["items"] == expected["items"] and got["image_refs"] == expected["image_refs"]
    assert got["images"] == expected["images"] - len(victims)
    with open_corpus(tmp_path, "faulty") as c:
        for path in victims.values():
            assert not c.has_image_url(site.url(path))
    for kind, path in victims.items():
        said = mentions(lines, site.url(path))
        assert len(said) == 1, (kind, said)
    assert "too large" in " ".join(mentions(lines, victims["bomb"]))
    assert "size limit" in " ".join(mentions(lines, victims["oversize"]))
    assert stats["errors"] == len(victims)


def test_robots_txt_is_obeyed_and_said_once(site: SampleSite, tmp_path: Path) -> None:
    site.disallow("/pinterest/resource/PinResource")
    before = len(site.requests)
    stats, lines = crawl(site, tmp_path, "pinterest")
    assert not any("PinResource/" in r and "UserPins" not in r for r in site.requests[before:])
    expected, got = site.expected_counts(1, ("pinterest",)), stored(tmp_path)
    # every pin is kept from its listing; only what a pin's detail adds (a story's pages) is missing
    story = site.world.pins[site.facts["story_pin_id"]]
    assert got["items"] == expected["items"]
    assert got["image_refs"] == expected["image_refs"] - (len(story.detail_image_urls()) - len(story.grid_image_urls()))
    assert len(mentions(lines, "robots.txt")) == 1
    assert stats["robots_forbidden"] == len(site.world.own_pin_ids)
