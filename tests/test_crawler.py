"""The real Scrapy crawl against the local sample site, in subprocesses (reactors cannot restart)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawler.run import check_names, crawl, source_urls
from crawler.spiders.pinterest import PinterestSpider, best_image_url, next_bookmark
from crawler.spiders.substack import SubstackSpider
from crawler.urls import api_url
from qualia.corpus import Corpus
from qualia.errors import InvalidArgument, InvalidProfileName, NotFound
from qualia.workspace import Workspace
from samplesite import SampleSite
from tests.helpers import ROOT, open_corpus


def run_crawl(site: SampleSite, home: Path, profile: str, *extra: str, depth: int = 2) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "crawler", profile, "--substack", site.substack_handle, "--pinterest",
         site.pinterest_username, "--depth", str(depth), "--delay", "0", *extra],
        env={**os.environ, "QUALIA_HOME": str(home), **site.env()}, cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def counts(home: Path, profile: str) -> dict[str, Any]:
    """The corpus's counts, in the keys the sample site's ``expected_counts`` predicts."""
    with open_corpus(home, profile) as c:
        got = c.counts()
    return {key: got[key] for key in ("items", "by_degree", "by_kind", "images", "image_urls", "image_refs", "edges")}


@pytest.fixture(scope="module")
def site() -> Iterator[SampleSite]:
    with SampleSite() as s:
        yield s


@pytest.fixture(scope="module")
def full(site: SampleSite, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("crawl-home")
    before = len(site.requests)
    stats = run_crawl(site, home, "full")
    return {"home": home, "stats": stats, "requests": site.requests[before:]}


# -- fast units ---------------------------------------------------------------------------------


def test_pinterest_bookmark_stop_rule() -> None:
    def page(marks: Any) -> dict[str, Any]:
        return {"resource": {"options": {"username": "u", **({} if marks is None else {"bookmarks": marks})}}}

    assert next_bookmark(page(["P2:abc=="])) == "P2:abc=="
    for ended in (None, [], ["-end-"], ["Y2JOb25lO|end"], [""], [None], "P2:abc=="):
        assert next_bookmark(page(ended)) is None, ended
    assert next_bookmark({"resource_response": {}}) is None and next_bookmark(None) is None


def test_pin_with_drifted_schema_keeps_what_it_can() -> None:
    spider = PinterestSpider()
    spider.root = "http://127.0.0.1:9/pinterest"
    pin = {
        "id": "42", "title": "tidewater cup",
        "images": {"orig": {"url": "http://127.0.0.1:9/pinimg/originals/a.jpg"}},
        "carousel_data": {"carousel_slots": 7},
        "story_pin_data": {"pages": [{"blocks": "text"}, 3, {"blocks": [{"image": 5}, {"text": "x"}]}]},
        "board": ["not", "a", "dict"],
    }
    record = spider.pin_record(pin, 1, None, False)
    assert record is not None and record.id == "pinterest:pin:42"
    assert [ref.url for ref in record.images] == ["http://127.0.0.1:9/pinimg/originals/a.jpg"]


def test_base_urls_with_a_path_prefix_are_appended_to() -> None:
    assert api_url("http://127.0.0.1:8123/substack", "/api/v1/user/mara/public_profile") == \
        "http://127.0.0.1:8123/substack/api/v1/user/mara/public_profile"
    assert api_url("http://h/pinterest/", "resource/PinResource/get/", {"data": '{"a": 1}'}) == \
        "http://h/pinterest/resource/PinResource/get/?data=%7B%22a%22%3A+1%7D"
    assert api_url("https://substack.com", "api/v1/x") == "https://substack.com/api/v1/x"


def test_publication_base_url_rules() -> None:
    spider = SubstackSpider(names=["mara"])
    spider.publication_template = None
    assert spider.publication_base({"subdomain": "tide"}) == "https://tide.substack.com"
    assert spider.publication_base({"subdomain": "tide", "custom_domain": "www.Tide.example"}) == "https://www.tide.example"
    spider.publication_template = "http://127.0.0.1:9/pub/{subdomain}"
    assert spider.publication_base({"subdomain": "tide", "custom_domain": "tide.example"}) == "http://127.0.0.1:9/pub/tide"
    assert spider.publication_base({"subdomain": "../etc"}) is None
    assert spider.publication_base({"subdomain": "tide\n"}) is None


def test_image_choice_and_arguments_are_checked(tmp_path: Path) -> None:
    assert best_image_url({"236x": {"url": "http://a/s.jpg", "width": 236}, "orig": {"url": "http://a/o.jpg"}}) == "http://a/o.jpg"
    assert best_image_url({"236x": {"url": "http://a/s.jpg", "width": 236},
                           "736x": {"url": "http://a/m.jpg", "width": 736}}) == "http://a/m.jpg"
    assert best_image_url({"orig": {"url": "javascript:alert(1)"}}) is None
    assert check_names(["@mara", "mara", "tide_2"], "handle") == ["mara", "tide_2"]
    with pytest.raises(InvalidArgument, match="invalid handle"):
        check_names(["../x"], "handle")
    with pytest.raises(InvalidArgument, match="must contain"):
        source_urls({"QUALIA_SUBSTACK_PUBLICATION_URL": "http://x/pub"})
    assert source_urls({"QUALIA_PINTEREST_URL": ""})["QUALIA_PINTEREST_URL"] == "https://www.pinterest.com"
    ws = Workspace(tmp_path)
    with pytest.raises(InvalidProfileName):
        crawl(ws, "Not A Profile", ["mara"], [])
    with pytest.raises(InvalidArgument, match="depth"):
        crawl(ws, "ok", ["mara"], [], depth=3)
    with pytest.raises(InvalidArgument, match="nothing to crawl"):
        crawl(ws, "ok", [], [])
    for delay in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument, match="delay"):
            crawl(ws, "ok", ["mara"], [], delay=delay)
    assert not any(tmp_path.iterdir())  # refused before anything was touched


def test_command_line_refuses_bad_input_without_touching_disk(tmp_path: Path) -> None:
    env = {**os.environ, "QUALIA_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "crawler", "Bad/Name", "--substack", "mara"], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "invalid profile name" in out.stderr
    assert not (tmp_path / "profiles").exists()
    # the same bad name gets the same exit code from the qualia command
    same = subprocess.run([sys.executable, "-m", "qualia.cli", "crawl", "Bad/Name", "--substack", "mara"], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    assert same.returncode == out.returncode and "invalid profile name" in same.stderr
    bad_url = subprocess.run([sys.executable, "-m", "crawler", "ok", "--substack", "mara"], cwd=ROOT,
                             env={**env, "QUALIA_PINTEREST_URL": "ftp://x"}, capture_output=True, text=True)
    assert bad_url.returncode == 2 and "QUALIA_PINTEREST_URL" in bad_url.stderr


# -- the real crawl -----------------------------------------------------------------------------


@pytest.mark.slow
def test_complete_crawl_stores_what_the_site_implies(site: SampleSite, full: dict[str, Any]) -> None:
    assert full["stats"]["finish_reasons"] == {"substack": "finished", "pinterest": "finished"}
    assert full["stats"]["errors"] == 0
    assert counts(full["home"], "full") == site.expected_counts(2)
    assert not (full["home"] / "profiles" / "full" / "crawl_job").exists()  # finished: nothing to resume


@pytest.mark.slow
def test_degree_three_is_never_fetched(site: SampleSite, full: dict[str, Any]) -> None:
    facts = site.facts
    with open_corpus(full["home"], "full") as c:
        assert c.item(f"substack:publication:{facts['degree3_publication_id']}") is None
        assert all(c.item(f"substack:post:{p}") is None for p in facts["degree3_post_ids"])
        assert all(c.item(f"pinterest:pin:{p}") is None for p in facts["degree3_pin_ids"])
        assert max(map(int, c.counts()["by_degree"])) == 2
    asked = full["requests"]
    assert not any(f"/pub/{facts['degree3_subdomain']}/" in r for r in asked)
    assert not any(p in r for r in asked for p in facts["degree3_pin_ids"])
    assert not any("/pinvideo/" in r for r in asked)  # video pins: the still, never the video
    # the crawler says who it is, everywhere it goes
    assert len(site.user_agents) == 1 and next(iter(site.user_agents)).startswith("qualia/")
    assert "+https://" in next(iter(site.user_agents))


@pytest.mark.slow
def test_shared_picture_stored_once(site: SampleSite, full: dict[str, Any]) -> None:
    url_a, url_b = site.facts["shared_picture_urls"]
    home = full["home"]
    with open_corpus(home, "full") as c:
        shas = [c.image_sha256(url_a), c.image_sha256(url_b)]
        assert shas[0] is not None and shas[0] == shas[1]
        assert c.image(shas[0]) is not None
    assert len(list((home / "images").rglob(f"{shas[0]}.*"))) == 1


@pytest.mark.slow
def test_items_keep_their_path_text_and_special_images(site: SampleSite, full: dict[str, Any]) -> None:
    facts = site.facts
    with open_corpus(full["home"], "full") as c:
        paid = c.item(f"substack:post:{facts['paid_post_id']}")
        assert paid["data"]["paywalled"] and paid["data"]["truncated"]
        assert paid["title"] and [i["role"] for i in paid["images"]] == ["cover"] and paid["images"][0]["sha256"]

        carousel = c.item(f"pinterest:pin:{facts['carousel_pin_id']}")
        assert [i["url"] for i in carousel["images"] if i["role"] == "carousel"] == facts["carousel_image_urls"]
        assert all(i["sha256"] for i in carousel["images"]) and carousel["data"]["carousel"]
        story = c.item(f"pinterest:pin:{facts['story_pin_id']}")
        assert [i["url"] for i in story["images"]] == facts["story_image_urls"]
        assert all(i["role"] == "story" and i["caption"] for i in story["images"])
        video = c.item(f"pinterest:pin:{facts['video_pin_id']}")
        assert video["data"]["video"] and len(video["images"]) == 1 and video["images"][0]["sha256"]

        mara = f"substack:user:{site.substack_handle}"
        assert c.item("substack:publication:2001")["via"] == {"src": mara, "relation": "writes", "degree": 1}
        post = site.world.publications[2003].posts[0]
        record = c.item(f"substack:post:{post.id}")
        assert record["via"]["relation"] == "publishes" and record["degree"] == 1
        assert post.paragraphs[0] in record["text"]
        body = [i for i in record["images"] if i["role"] == "body"]
        assert [(i["alt"], i["caption"]) for i in body] == [(f.alt or None, f.caption or None) for f in post.figures]
        # a figure with neither alt nor caption keeps the paragraphs around it
        bare = next(p for p in site.world.posts.values()
                    if not p.paid and any(not f.alt and not f.caption for f in p.figures))
        position = next(k for k, f in enumerate(bare.figures) if not f.alt and not f.caption)
        refs = {i["url"]: i for i in c.item(f"substack:post:{bare.id}")["images"]}
        assert bare.paragraphs[position] in refs[site.url(bare.figures[position].url)]["context"]
        # Reached both by recommendation (degree 2) and subscription (degree 1): the closer path wins.
        assert c.item("substack:publication:2002")["degree"] == 1
        assert c.counts()["edges_by_relation"]["related"] > 100
        assert c.items_without_path() == []
        assert c.item("substack:publication:2003")["data"]["authors"][0]["handle"] == "jun"


@pytest.mark.slow
def test_sparse_detail_answers_keep_what_listings_said(site: SampleSite, full: dict[str, Any]) -> None:
    """The sample site's detail answers drop fields as the real ones do (board, pinner, cover, canonical URL)."""
    world = site.world
    with open_corpus(full["home"], "full") as c:
        for pin_id in world.own_pin_ids[:12]:  # every third detail has neither board nor pinner
            pin, truth = c.item(f"pinterest:pin:{pin_id}"), world.pins[pin_id]
            assert pin["data"]["board"] == {"id": truth.board_id, "name": truth.board_name, "url": truth.board_url}
            assert pin["data"]["pinner"] == truth.pinner and pin["published_at"]
        sparse = [p for p in world.publications[2001].posts if p.id % 4 == 1]
        assert sparse
        for post in sparse:
            record = c.item(f"substack:post:{post.id}")
            assert record["data"]["canonical_url"].endswith(f"/p/{post.slug}")
            assert record["data"]["publication_id"] == 2001
            assert site.url(post.cover_url) in [i["url"] for i in record["images"] if i["role"] == "cover"]


@pytest.mark.slow
def test_recrawl_adds_nothing_and_refetches_no_picture(site: SampleSite, full: dict[str, Any]) -> None:
    home = full["home"]
    files = sorted(p.name for p in (home / "images").rglob("*") if p.is_file())
    before = len(site.requests)
    stats = run_crawl(site, home, "full")
    assert stats["items_new"] == 0 and stats["images_stored"] == 0
    assert counts(home, "full") == site.expected_counts(2)
    assert sorted(p.name for p in (home / "images").rglob("*") if p.is_file()) == files
    assert not any("/pinimg/" in r or "/substackcdn/" in r for r in site.requests[before:])


@pytest.mark.slow
def test_faults_fail_one_thing_never_the_crawl(site: SampleSite, tmp_path: Path) -> None:
    world = site.world
    broken_post = world.publications[2003].posts[5]
    bad_picture = world.pins[world.own_pin_ids[20]].orig_url
    site.fail_next("/api/v1/archive", 500, times=2)
    site.fail_next("BoardsResource", 429, times=2)
    site.fail_next("UserPinsResource", 503, times=1)
    site.corrupt_next(f"/smallkitchens/api/v1/posts/{broken_post.slug}")
    site.corrupt_next(bad_picture)
    try:
        stats = run_crawl(site, tmp_path, "faulty", depth=1)
    finally:
        site.clear_faults()
    expected = site.expected_counts(1)
    got = counts(tmp_path, "faulty")
    # the broken post answer is asked for again (and heals); the broken picture is the one thing lost
    assert stats["retries"] >= 6 and stats["errors"] == 1
    assert got["items"] == expected["items"] and got["by_kind"] == expected["by_kind"]
    assert got["by_degree"] == expected["by_degree"]
    assert got["image_refs"] == expected["image_refs"]
    assert got["images"] == expected["images"] - 1
    with open_corpus(tmp_path, "faulty") as c:
        post = c.item(f"substack:post:{broken_post.id}")
        assert post["title"] == broken_post.title and len(post["images"]) == 1 + len(broken_post.figures)
        assert not c.has_image_url(site.base_url + bad_picture)

    run_crawl(site, tmp_path, "faulty", depth=1)  # the next crawl repairs what failed
    assert counts(tmp_path, "faulty") == expected


@pytest.mark.slow
def test_interrupted_depth_one_crawl_resumes(site: SampleSite, tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    site.latency = 0.05
    start = len(site.requests)
    proc = subprocess.Popen(
        [sys.executable, "-m", "crawler", "resumed", "--substack", site.substack_handle, "--pinterest",
         site.pinterest_username, "--depth", "1", "--delay", "0"],
        env={**os.environ, "QUALIA_HOME": str(tmp_path), **site.env()}, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with Corpus.open(ws, "resumed", readonly=True) as c:
                    if sum(c.counts()["items"].values()) > 100:
                        break
            except (NotFound, sqlite3.Error):  # not created yet, or busy
                pass
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        site.latency = 0.0
    assert proc.returncode == 0, err[-2000:]
    first = json.loads(out)
    assert first["resumable"] and (tmp_path / "profiles" / "resumed" / "crawl_job").is_dir()
    partial = counts(tmp_path, "resumed")
    assert 100 < sum(partial["items"].values()) < sum(site.expected_counts(1)["items"].values())

    middle = len(site.requests)
    second = run_crawl(site, tmp_path, "resumed", depth=1)
    assert second["finish_reasons"] == {"substack": "finished", "pinterest": "finished"}
    assert counts(tmp_path, "resumed") == site.expected_counts(1)
    # Resumed, not started over: only the profile (always asked anew) and robots.txt are fetched twice.
    again = set(site.requests[start:middle]) & set(site.requests[middle:])
    assert all(r == "/robots.txt" or r.endswith("/public_profile") for r in again), sorted(again)[:5]
    # Depth 1 never asks for what only leads to degree 2.
    assert not any("/recommendations/" in r or "RelatedPinFeed" in r or "BoardContentRecommendation" in r
                   for r in site.requests[start:])
    assert not (tmp_path / "profiles" / "resumed" / "crawl_job").exists()


@pytest.mark.slow
def test_max_items_caps_posts_and_pins(site: SampleSite, tmp_path: Path) -> None:
    run_crawl(site, tmp_path, "capped", "--max-items", "25", depth=1)
    with open_corpus(tmp_path, "capped") as c:
        got = c.counts()
        assert got["by_kind"]["post"] == 25 and got["by_kind"]["pin"] == 25  # each source its own cap
        # Every picture a stored item shows was fetched, and nothing else.
        assert got["image_urls"] == got["image_ref_urls"]
    # a later crawl without the cap reads the feeds a capped crawl cut short, and finds everything
    run_crawl(site, tmp_path, "capped", depth=1)
    assert counts(tmp_path, "capped") == site.expected_counts(1)
