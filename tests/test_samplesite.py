"""The bundled sample site serves the real Substack and Pinterest shapes (docs: sources.md)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from samplesite import STYLES, SUBJECTS, SampleSite, draw_picture
from samplesite.content import World
from tests.helpers import ROOT, free_port

PINTEREST_HEADERS = {"Accept": "application/json, text/javascript, */*, q=0.01", "X-Requested-With": "XMLHttpRequest"}


@pytest.fixture(scope="module")
def site() -> Iterator[SampleSite]:
    with SampleSite() as s:
        yield s


def resource(site: SampleSite, name: str, options: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    data = quote(json.dumps({"options": options, "context": {}}))
    return httpx.get(f"{site.pinterest_url}/resource/{name}Resource/get/?source_url=%2F&data={data}",
                     headers=PINTEREST_HEADERS if headers is None else headers)


def pub(site: SampleSite, subdomain: str) -> str:
    return site.publication_url_template.replace("{subdomain}", subdomain)


def test_pictures_are_deterministic_small_and_distinct() -> None:
    assert len(STYLES) >= 5 and len(SUBJECTS) >= 6
    a, b = draw_picture("tidewater", "boat", 7), draw_picture("tidewater", "boat", 7)
    assert a.size == (96, 96) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()
    assert draw_picture("tidewater", "boat", 8).tobytes() != a.tobytes()
    assert draw_picture("static", "boat", 7).tobytes() != a.tobytes()
    assert draw_picture("paper moon", "cup", 1, size=64).size == (64, 64)
    with pytest.raises(ValueError, match="unknown style"):
        draw_picture("neon", "cup", 1)


def test_world_is_the_same_every_time_and_big_enough() -> None:
    one, two = World(), World()
    assert one.expected_counts(2) == two.expected_counts(2)
    path = next(iter(one.pictures))
    assert one.pictures[path].render() == two.pictures[path].render()
    counts = one.expected_counts(2)
    assert 400 <= counts["image_refs"] <= 700  # text-image pairs
    assert 60 <= counts["by_kind"]["post"] <= 100 and 250 <= counts["by_kind"]["pin"] <= 450
    shallow = one.expected_counts(1)
    assert set(shallow["by_degree"]) == {"0", "1"}
    assert shallow["by_degree"]["1"] == counts["by_degree"]["1"]
    degree, _ = one.reach(2)
    assert "substack:publication:2007" not in degree and max(degree.values()) == 2


def test_substack_profile_archive_and_post(site: SampleSite) -> None:
    profile = httpx.get(f"{site.substack_url}/api/v1/user/{site.substack_handle}/public_profile").json()
    assert profile["handle"] == site.substack_handle
    assert len(profile["subscriptions"]) == 2 and len(profile["publicationUsers"]) == 1
    assert {"id", "name", "subdomain", "custom_domain"} <= set(profile["subscriptions"][0]["publication"])
    assert any(s["publication"]["custom_domain"] for s in profile["subscriptions"])
    assert httpx.get(f"{site.substack_url}/api/v1/user/nobody/public_profile").status_code == 404

    base = pub(site, "quiethours")
    first = httpx.get(f"{base}/api/v1/archive", params={"sort": "new", "offset": 0, "limit": 12}).json()
    rest = httpx.get(f"{base}/api/v1/archive", params={"sort": "new", "offset": 12, "limit": 12}).json()
    assert len(first) == 12 and 0 < len(rest) < 12  # a short page ends the archive
    assert first[0]["post_date"] > first[-1]["post_date"]  # newest first
    assert httpx.get(f"{base}/api/v1/archive", params={"limit": 51}).status_code == 400
    post = httpx.get(f"{base}/api/v1/posts/{first[0]['slug']}").json()
    assert post["audience"] == "everyone" and post["cover_image"].startswith(site.base_url)
    assert "<figure>" in post["body_html"] and "<figcaption" in post["body_html"] and 'alt="' in post["body_html"]


def test_paid_post_is_truncated(site: SampleSite) -> None:
    paid = site.world.posts[site.facts["paid_post_id"]]
    post = httpx.get(f"{pub(site, 'tidewater')}/api/v1/posts/{paid.slug}").json()
    assert post["audience"] == "only_paid"
    assert "<img" not in post["body_html"] and post["cover_image"]
    assert post["truncated_body_text"] == paid.paragraphs[0]


def test_recommendations_authors_and_rss(site: SampleSite) -> None:
    recs = httpx.get(f"{pub(site, 'papermoon')}/api/v1/recommendations/from/2005").json()
    assert [r["recommendedPublication"]["id"] for r in recs] == [site.facts["degree3_publication_id"]]
    authors = httpx.get(f"{pub(site, 'quiethours')}/api/v1/publication/users/ranked?public=true").json()
    assert authors[0]["handle"] == site.substack_handle
    rss = ET.fromstring(httpx.get(f"{pub(site, 'tidewater')}/feed").content)
    items = rss.findall("./channel/item")
    assert len(items) == 14 and items[0].find("title").text
    assert httpx.get(f"{pub(site, 'nosuchpub')}/api/v1/archive").status_code == 404


def test_pinterest_needs_its_headers_and_pages_with_bookmarks(site: SampleSite) -> None:
    refused = resource(site, "Boards", {"username": site.pinterest_username}, headers={})
    assert refused.status_code == 403
    assert refused.json()["resource_response"]["message"] == "Invalid Resource Request"

    options = {"username": site.pinterest_username, "page_size": 25, "sort": "last_pinned_to",
               "field_set_key": "profile_grid_item"}
    boards, pages = [], 0
    while True:
        body = resource(site, "Boards", options).json()
        boards += body["resource_response"]["data"]
        pages += 1
        mark = body["resource"]["options"]["bookmarks"]
        if mark == ["-end-"]:
            break
        options = {**options, "bookmarks": mark}
    assert pages >= 2 and len(boards) == len(site.world.boards)
    assert {"id", "name", "url", "description", "pin_count", "owner"} <= set(boards[0])

    feed = resource(site, "BoardFeed", {"board_id": site.facts["paged_board_id"], "page_size": 25}).json()
    assert len(feed["resource_response"]["data"]) == 25 and feed["resource"]["options"]["bookmarks"] != ["-end-"]
    assert resource(site, "Boards", {"username": "x", "bookmarks": ["garbage!"]}).status_code == 400
    bad = httpx.get(f"{site.pinterest_url}/resource/BoardsResource/get/?data=%7Bnot-json", headers=PINTEREST_HEADERS)
    assert bad.status_code == 400


def test_special_pins(site: SampleSite) -> None:
    facts = site.facts
    grid = resource(site, "UserPins", {"username": site.pinterest_username}).json()["resource_response"]["data"]
    carousel = next(p for p in grid if p["id"] == facts["carousel_pin_id"])
    slots = carousel["carousel_data"]["carousel_slots"]
    assert [s["images"]["orig"]["url"] for s in slots] == facts["carousel_image_urls"]
    story = resource(site, "Pin", {"id": facts["story_pin_id"], "field_set_key": "detailed"}).json()
    pages = story["resource_response"]["data"]["story_pin_data"]["pages"]
    urls = [b["image"]["images"]["originals"]["url"] for p in pages for b in p["blocks"] if "image" in b]
    assert urls == facts["story_image_urls"]
    video = resource(site, "Pin", {"id": facts["video_pin_id"]}).json()["resource_response"]["data"]
    assert video["videos"]["video_list"] and video["images"]["orig"]["url"]
    related = resource(site, "RelatedPinFeed", {"pin": facts["carousel_pin_id"], "add_vase": True}).json()
    assert "bookmarks" not in related["resource"]["options"]  # a missing bookmark also ends a feed
    ideas = resource(site, "BoardContentRecommendation", {"id": facts["paged_board_id"], "type": "board"}).json()
    assert ideas["resource"]["options"]["bookmarks"][0].startswith("Y2JOb25lO")


def test_pictures_jpeg_png_and_one_picture_under_two_urls(site: SampleSite) -> None:
    url_a, url_b = site.facts["shared_picture_urls"]
    a, b = httpx.get(url_a), httpx.get(url_b)
    assert "substackcdn" in url_b and "pinimg" in url_a and url_a != url_b
    assert a.content == b.content and a.headers["content-type"] == "image/jpeg"
    png = next(p for p, pic in site.world.pictures.items() if pic.fmt == "png")
    r = httpx.get(site.base_url + png)
    assert r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).format == "PNG"
    assert httpx.get(site.base_url + "/robots.txt").text.startswith("User-agent: *")


def test_fault_injection(site: SampleSite) -> None:
    url = f"{pub(site, 'quiethours')}/api/v1/publication/users/ranked"
    site.fail_next("/quiethours/api/v1/publication/users/ranked", 429, times=2)
    assert [httpx.get(url).status_code for _ in range(3)] == [429, 429, 200]
    site.corrupt_next("/quiethours/api/v1/publication/users/ranked")
    with pytest.raises(ValueError):
        json.loads(httpx.get(url).content)
    assert httpx.get(url).json()[0]["handle"] == site.substack_handle
    picture = site.facts["shared_picture_urls"][0]
    site.corrupt_next(picture.removeprefix(site.base_url))
    with pytest.raises(Exception):
        Image.open(io.BytesIO(httpx.get(picture).content)).verify()
    assert any("users/ranked" in r for r in site.requests)


def test_module_serves_in_the_foreground() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "samplesite", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        assert httpx.get(f"http://127.0.0.1:{port}/robots.txt").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
