"""A detail answer never erases what the listing that led to it knew (issue 11, item 2).

The records come from the spiders' own parsers, fed answers shaped like the sites' real ones: a pin's
detail without its ``board``/``pinner`` objects, or with the board reduced to a numeric id; a post's
detail with a null cover and no ``canonical_url`` or ``audience``. They are written through the crawl's
``CorpusSink`` in the order a crawl writes them: listing first, detail second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crawler.items import Record
from crawler.pipelines import CorpusSink, merge_data
from crawler.spiders.pinterest import PinterestSpider
from crawler.spiders.substack import SubstackSpider
from qualia.workspace import Workspace
from tests.helpers import open_corpus

PINIMG = "http://127.0.0.1:9/pinimg"


def listed_pin() -> dict[str, Any]:
    return {
        "id": "880000000003", "title": "tidewater boat", "description": "teal bands again", "link": "http://blog.example/b",
        "created_at": "Thu, 30 May 2024 18:00:00 +0000", "carousel_data": None, "is_video": False,
        "images": {"236x": {"url": f"{PINIMG}/236x/a.jpg", "width": 236}, "orig": {"url": f"{PINIMG}/originals/a.jpg"}},
        "board": {"id": "550000000000", "name": "tidewater", "url": "/mara/tidewater/"},
        "pinner": {"id": 4242, "username": "mara"},
    }


def write_all(ws: Workspace, records: list[Record]) -> None:
    sink = CorpusSink(ws, "mara")
    for record in records:
        sink.write(record)
    sink.close()


def test_merge_rule() -> None:
    known = {"a": 1, "b": {"x": 1, "y": 2}, "c": None}
    assert merge_data(known, {"a": None, "b": {"x": None, "y": 3}, "c": 5}, True) == {"a": 1, "b": {"x": 1, "y": 3}, "c": 5}
    assert merge_data(known, {"a": 2, "b": None, "d": 4}, False) == {"a": 1, "b": {"x": 1, "y": 2}, "c": None, "d": 4}
    assert merge_data(known, {"a": 2}, True)["a"] == 2  # a detail page's value wins over the listing's


def test_pin_detail_without_board_or_pinner_keeps_the_listings(tmp_path: Path) -> None:
    spider = PinterestSpider()
    spider.root = "http://127.0.0.1:9/pinterest"
    listing = spider.pin_record(listed_pin(), 1, ("pinterest:board:550000000000", "contains"), False)
    bare = {"id": 880000000003, "title": None, "closeup_unified_description": "kept this one", "board": None,
            "created_at": None, "images": {"orig": {"url": f"{PINIMG}/originals/a.jpg"}}}  # no pinner at all
    reduced = {**bare, "board": {"id": 550000000000}, "pinner": "4242"}  # a bare id, as in normalized answers
    records = [listing, spider.pin_record(bare, 1, None, True), spider.pin_record(reduced, 1, None, True)]
    assert all(r is not None for r in records)
    write_all(Workspace(tmp_path), records)
    with open_corpus(tmp_path, "mara") as corpus:
        pin = corpus.item("pinterest:pin:880000000003")
    assert pin["data"]["board"] == {"id": "550000000000", "name": "tidewater", "url": "/mara/tidewater/"}
    assert pin["data"]["pinner"] == "mara" and pin["data"]["link"] == "http://blog.example/b"
    assert pin["data"]["video"] is False and pin["data"]["carousel"] is False
    assert pin["title"] == "tidewater boat" and pin["published_at"].startswith("2024-05-30")
    assert "kept this one" in pin["text"]  # what the detail did say is taken


def test_post_detail_with_null_fields_keeps_the_listings(tmp_path: Path) -> None:
    spider = SubstackSpider(names=["mara"])
    spider.publication_template = "http://127.0.0.1:9/pub/{subdomain}"
    meta = {"degree": 1, "pub_id": 2002, "base": "http://127.0.0.1:9/pub/tidewater"}
    listed = {"id": 2002001, "publication_id": 2002, "title": "Notes on tidewater", "subtitle": "teal, always",
              "slug": "notes-on-tidewater-1", "canonical_url": "http://127.0.0.1:9/pub/tidewater/p/notes-on-tidewater-1",
              "post_date": "2024-05-29T09:00:00.000Z", "cover_image": "http://127.0.0.1:9/cdn/cover.jpeg",
              "audience": "only_paid"}
    detail = {"id": "2002001", "publication_id": "2002", "title": "Notes on tidewater", "slug": "notes-on-tidewater-1",
              "cover_image": None, "audience": None, "post_date": None,
              "body_html": '<p>first lines</p><figure><img src="http://127.0.0.1:9/cdn/f.jpeg" alt="a boat"></figure>'}
    records = [r for r in spider.post(listed, meta, complete=False) if isinstance(r, Record)]
    records += [r for r in spider.post(detail, meta, complete=True) if isinstance(r, Record)]
    assert len(records) == 2
    write_all(Workspace(tmp_path), records)
    with open_corpus(tmp_path, "mara") as corpus:
        post = corpus.item("substack:post:2002001")
    data = post["data"]
    assert data["canonical_url"] == listed["canonical_url"] and data["audience"] == "only_paid"
    assert data["paywalled"] is True and data["subtitle"] == "teal, always" and data["publication_id"] == 2002
    assert post["published_at"] == listed["post_date"]
    assert {i["role"]: i["url"] for i in post["images"]} == {"cover": listed["cover_image"],
                                                             "body": "http://127.0.0.1:9/cdn/f.jpeg"}
