"""Pinterest's RSS fallback (issue 11, item 5): when the resource API refuses the person's own listings
(403/404, or an HTML page where JSON should be), her pins come from ``/{user}/feed.rss`` and
``/{user}/{board}.rss``, recorded as coming from RSS, with pictures asked for at 736x where the CDN has
that size and at the feed's 236x thumbnail where it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from samplesite import SampleSite
from tests.helpers import open_corpus
from tests.test_crawl_faults import crawl

pytestmark = pytest.mark.slow


def rss_pins(site: SampleSite, boards: bool) -> set[str]:
    """The pins the feeds give: the 25 newest of hers, and (``boards``) the first 25 of each board."""
    world = site.world
    pins = {p.id for p in world.user_pins(site.pinterest_username)[:25]}
    if boards:
        pins |= {pin_id for board in world.boards.values() for pin_id in board.pin_ids[:25]}
    return pins


def check_corpus(site: SampleSite, home: Path, expected: set[str]) -> None:
    with open_corpus(home, "faulty") as c:
        stored = {row["id"].rsplit(":", 1)[1] for row in c.items("pin")}
        assert stored == expected
        for pin_id in sorted(expected):
            pin, truth = c.item(f"pinterest:pin:{pin_id}"), site.world.pins[pin_id]
            assert pin["data"]["from_rss"] is True and pin["degree"] == 1
            assert truth.description in pin["text"]
            [picture] = pin["images"]
            assert picture["sha256"], pin_id  # stored, in one size or the other
            if truth.picture.fmt == "jpg":  # the sample CDN has 736x of these only
                assert "/736x/" in picture["url"]


def test_refused_feeds_are_read_from_rss(site: SampleSite, tmp_path: Path) -> None:
    site.fail_next("UserPinsResource", 403, times=100_000)
    site.fail_next("BoardFeedResource", 404, times=100_000)
    stats, lines = crawl(site, tmp_path, "pinterest")
    expected = rss_pins(site, boards=True)
    check_corpus(site, tmp_path, expected)
    assert sum("reading" in line and ".rss" in line for line in lines) == 1 + len(site.world.boards)
    assert stats["sources"]["pinterest"]["pages"] > 0


def test_everything_refused_still_gives_her_newest_pins(site: SampleSite, tmp_path: Path) -> None:
    site.fail_next("/pinterest/resource/", 403, times=100_000)
    stats, _ = crawl(site, tmp_path, "pinterest")
    check_corpus(site, tmp_path, rss_pins(site, boards=False))
    assert stats["items_new"] == 1 + 25  # her user node and the feed's pins


def test_html_instead_of_json_falls_back_too(site: SampleSite, tmp_path: Path) -> None:
    site.fault_next("UserPinsResource", "html", times=100_000)
    site.fault_next("BoardsResource", "html", times=100_000)
    before = len(site.requests)
    _, lines = crawl(site, tmp_path, "pinterest")
    check_corpus(site, tmp_path, rss_pins(site, boards=False))
    said = [line for line in lines if ".rss instead" in line]
    assert len(said) == 2 and any("Boards" in line for line in said) and any("UserPins" in line for line in said)
    assert sum(r.endswith("/feed.rss") for r in site.requests[before:]) == 1  # both lead to one feed, read once
