"""Each Scrapy component of the crawler, built the way Scrapy builds it (``get_crawler`` + ``from_crawler``)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from scrapy import Request
from scrapy.exceptions import DropItem, IgnoreRequest
from scrapy.http import Response
from scrapy.utils.test import get_crawler

from crawler.items import ImageRef, PictureBytes, Record
from crawler.middlewares import BackoffRetryMiddleware, CorpusAwareRequests, DegreeAwareFingerprinter
from crawler.pipelines import CorpusPipeline, CorpusSink, ValidatePipeline, corpus_sink
from crawler.spiders.pinterest import PinterestSpider
from qualia.errors import InvalidArgument
from qualia.workspace import Workspace
from tests.helpers import open_corpus, png

PIN_URL = "http://127.0.0.1:9/pinimg/1.png"


def crawler_for(ws: Workspace, **settings):
    return get_crawler(settings_dict={"QUALIA_WORKSPACE": str(ws.root), "QUALIA_PROFILE": "mara", **settings})


def pin(n: int = 1, degree: int = 1, **fields) -> Record:
    return Record(f"pinterest:pin:{n}", "pinterest", "pin", degree, via=("pinterest:board:1", "contains"),
                  title=f"pin {n}", images=[ImageRef(PIN_URL, "pin")], **fields)


def test_validate_pipeline_refuses_what_would_corrupt_the_corpus(tmp_path: Path) -> None:
    validate = ValidatePipeline.from_crawler(crawler_for(Workspace(tmp_path), QUALIA_DEPTH=1))
    good = pin()
    assert validate.process_item(good) is good
    for bad in (pin(degree=2),  # beyond the crawl's depth
                Record("pinterest:pin:1", "pinterest", "post", 1),  # a kind Pinterest has not
                Record("pinterest:board:1", "pinterest", "pin", 1),  # an id of another kind
                Record("pinterest:pin:1", "pinterest", "pin", 1, via=("", "related")),
                PictureBytes("not a url", b"x"), "not an item"):
        with pytest.raises(DropItem):
            validate.process_item(bad)
    odd = pin()
    odd.images = [ImageRef("javascript:alert(1)", "pin"), ImageRef(PIN_URL, "sticker"), ImageRef(PIN_URL, "pin")]
    assert [ref.url for ref in validate.process_item(odd).images] == [PIN_URL]


def test_corpus_pipeline_stores_records_and_pictures_and_drops_bad_bytes(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    crawler = crawler_for(ws, QUALIA_MAX_ITEMS=1)
    pipeline = CorpusPipeline.from_crawler(crawler)
    assert corpus_sink(crawler) is pipeline.sink  # one writer per crawler, found through the crawler
    pipeline.process_item(pin(1))
    pipeline.process_item(PictureBytes(PIN_URL, png((10, 200, 30))))
    with pytest.raises(DropItem, match="max-items"):
        pipeline.process_item(pin(2))
    with pytest.raises(DropItem, match="broken.png"):
        pipeline.process_item(PictureBytes("http://127.0.0.1:9/broken.png", b"\x89PNG broken"))
    pipeline.close_spider()
    assert crawler.stats.get_value("qualia/images_invalid") == 1
    assert crawler.stats.get_value("qualia/items_refused_max_items") == 1
    with open_corpus(ws, "mara") as corpus:
        assert corpus.item("pinterest:pin:1")["images"][0]["sha256"] == corpus.image_sha256(PIN_URL)
        assert corpus.item("pinterest:pin:2") is None


def test_a_listing_never_erases_what_a_detail_page_said(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    sink = CorpusSink(ws, "mara")
    assert sink.write(pin(1, complete=True, data={"board": "tides", "pinner": "mara"}))
    assert sink.write(pin(1, data={"board": None, "link": "http://x"})) is False
    sink.close()
    with open_corpus(ws, "mara") as corpus:
        assert corpus.item_data("pinterest:pin:1") == {"board": "tides", "pinner": "mara", "link": "http://x"}


def test_a_crawler_without_a_workspace_is_refused_plainly() -> None:
    with pytest.raises(InvalidArgument, match="QUALIA_WORKSPACE"):
        CorpusPipeline.from_crawler(get_crawler(settings_dict={"QUALIA_PROFILE": "mara"}))


def test_crawls_attached_sink_is_shared_by_its_components(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    crawler = crawler_for(ws)
    shared = CorpusSink(ws, "mara")
    crawler.qualia_sink = shared
    assert CorpusPipeline.from_crawler(crawler).sink is shared
    assert CorpusAwareRequests.from_crawler(crawler).sink is shared
    shared.close()


def test_corpus_aware_requests_skip_stored_and_unshown_pictures(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    crawler = get_crawler(PinterestSpider, {"QUALIA_WORKSPACE": str(ws.root), "QUALIA_PROFILE": "mara",
                                            "QUALIA_MAX_ITEMS": 1})
    crawler.spider = crawler._create_spider()
    middleware = CorpusAwareRequests.from_crawler(crawler)
    picture = Request(PIN_URL, meta={"qualia_image": PIN_URL})
    with pytest.raises(IgnoreRequest, match="no stored item shows"):
        middleware.process_request(picture)
    middleware.sink.write(pin(1))
    assert middleware.process_request(picture) is None  # shown, not stored yet: fetch it
    middleware.sink.store_picture(PictureBytes(PIN_URL, png((1, 2, 3))))
    with pytest.raises(IgnoreRequest, match="already stored"):
        middleware.process_request(picture)
    assert crawler.stats.get_value("qualia/images_already_stored") == 1
    # --max-items reached (one pin): no more pages, but a request without a degree still goes
    with pytest.raises(IgnoreRequest, match="max-items"):
        middleware.process_request(Request("http://127.0.0.1:9/page", meta={"degree": 1}))
    assert middleware.process_request(Request("http://127.0.0.1:9/robots.txt")) is None
    # the cap is per source: Substack still has room for its own posts
    assert middleware.sink.full("pinterest") and not middleware.sink.full("substack")
    assert middleware.sink.write(Record("substack:post:1", "substack", "post", 1, via=("substack:publication:1", "publishes")))
    middleware.sink.close()


def test_backoff_retry_waits_as_the_site_asks_else_doubles(tmp_path: Path) -> None:
    crawler = get_crawler(settings_dict={"QUALIA_RETRY_BACKOFF": 0.5, "QUALIA_RETRY_BACKOFF_MAX": 3.0,
                                         "RETRY_TIMES": 5, "RETRY_HTTP_CODES": [429, 503]})
    crawler.spider = crawler._create_spider("retrying")  # retries are counted per spider
    retry = BackoffRetryMiddleware.from_crawler(crawler)
    request = Request("http://127.0.0.1:9/feed")
    asked = retry.process_response(request, Response(request.url, status=429, headers={"Retry-After": "2"},
                                                     request=request))
    assert isinstance(asked, Request) and asked.meta["qualia_backoff"] == 2.0
    waits = []
    for _ in range(4):
        request = retry.process_response(request, Response(request.url, status=503, request=request))
        waits.append(request.meta["qualia_backoff"])
    assert waits == [0.5, 1.0, 2.0, 3.0]  # doubling per attempt, capped
    ok = Response(request.url, status=200, request=request)
    assert retry.process_response(request, ok) is ok


def test_fingerprint_tells_degrees_apart() -> None:
    fingerprinter = DegreeAwareFingerprinter.from_crawler(get_crawler())
    near = fingerprinter.fingerprint(Request("http://127.0.0.1:9/p", meta={"degree": 1}))
    far = fingerprinter.fingerprint(Request("http://127.0.0.1:9/p", meta={"degree": 2}))
    plain = fingerprinter.fingerprint(Request("http://127.0.0.1:9/p"))
    assert len({near, far, plain}) == 3
    assert near == fingerprinter.fingerprint(Request("http://127.0.0.1:9/p", meta={"degree": 1}))


def test_polite_by_default_and_quick_on_a_local_mirror(tmp_path: Path) -> None:
    from crawler.run import check_request, crawl_settings
    from crawler.settings import PROJECT_URL

    ws = Workspace(tmp_path)
    polite = crawl_settings(ws, check_request("mara", ["mara"], [], 2, None, 1.0, None))
    assert polite.getbool("ROBOTSTXT_OBEY") and polite.getbool("AUTOTHROTTLE_ENABLED")
    assert polite.getfloat("DOWNLOAD_DELAY") == 1.0 and polite.getint("CONCURRENT_REQUESTS_PER_DOMAIN") <= 2
    assert polite.get("USER_AGENT").startswith("qualia/") and PROJECT_URL in polite.get("USER_AGENT")
    mirror = crawl_settings(ws, check_request("mara", ["mara"], [], 2, None, 0.0, None))
    assert mirror.getfloat("DOWNLOAD_DELAY") == 0 and not mirror.getbool("AUTOTHROTTLE_ENABLED")
    assert mirror.getint("CONCURRENT_REQUESTS_PER_DOMAIN") > 2 and mirror.getbool("ROBOTSTXT_OBEY")
    from crawler.options import add_crawl_arguments

    parser = argparse.ArgumentParser()
    add_crawl_arguments(parser)
    assert parser.parse_args([]).delay == 1.0  # the command line's default is the polite one
