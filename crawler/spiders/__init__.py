"""What both spiders share: degree bookkeeping, image requests, JSON that never raises.

URLs are built by ``crawler.urls`` and texts cleaned by the text policy (``qualia.text``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Request, Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawler.items import Done, PictureBytes, Record
from crawler.problems import Skipped, describe_failure, growing_wait, shown


class CorpusSpider(scrapy.Spider):
    """A spider that records degrees: ``meta["degree"]`` is the degree of the node a page lists."""

    source = ""

    def __init__(self, names: list[str] | None = None, depth: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = list(names or [])
        self.depth = int(depth)
        # Lowest degree each node was expanded at in this process; a node met again further away is
        # not expanded again (the degree-aware fingerprint would let the requests through).
        self.expanded: dict[str, int] = {}

    @classmethod
    def update_settings(cls, settings: Any) -> None:
        super().update_settings(settings)
        # Each spider keeps its own resumable queue under the profile's crawl_job folder.
        root = settings.get("QUALIA_JOB_ROOT")
        if root:
            settings.set("JOBDIR", str(Path(root) / cls.name), priority="spider")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> CorpusSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.configure(crawler.settings)
        return spider

    def configure(self, settings: Any) -> None:
        """Read base URLs and page sizes from settings (subclasses)."""

    def first_expansion(self, node: str, degree: int) -> bool:
        if self.expanded.get(node, self.depth + 1) <= degree:
            return False
        self.expanded[node] = degree
        return True

    def get(self, url: str, callback: Any, **kwargs: Any) -> Request:
        """A request whose failure (after Scrapy's retries) is logged once and counted, never raised."""
        return Request(url, callback, errback=self.failed, **kwargs)

    def once(self, what: str, node: str, paged: bool = False) -> dict[str, Any]:
        """Request meta that lets a later crawl skip reading ``what`` of ``node`` again once this crawl
        has read it to its end (``ended``); a ``paged`` feed's first page is read every time."""
        return {"qualia_done": f"{what}:{node}", "qualia_paged": paged}

    def next_meta(self, response: Response, items: list[str]) -> dict[str, Any]:
        """The meta a feed's next page carries over: what it is, and the ids the page before listed."""
        return {k: response.meta[k] for k in ("qualia_done", "qualia_paged") if k in response.meta} | {
            "qualia_after": items}

    def ended(self, response: Response) -> Iterator[Done]:
        """The mark that ``response``'s page or feed was read to its end (after what it listed)."""
        key = response.meta.get("qualia_done")
        if key is not None:
            yield Done(f"{key}@{response.meta.get('degree', 0)}")

    def error(self, response: Response, reason: str) -> None:
        self.logger.warning("skipping %s: %s", shown(response.url), reason)
        self.crawler.stats.inc_value("qualia/parse_errors")

    def failed(self, failure: Failure) -> list[Request] | None:
        """The errback of every request: one log line per thing lost, and a count per kind of loss.

        A picture asked for in a larger size than the site gave (``meta["qualia_smaller"]``) that is
        not there is asked for in the size the site gave instead: nothing is lost.
        """
        request = getattr(failure, "request", None)
        if failure.check(Skipped):  # the corpus made the request pointless: nothing was lost
            return None
        smaller = request.meta.get("qualia_smaller") if request is not None else None
        if smaller and failure.check(HttpError):
            self.crawler.stats.inc_value("qualia/pictures_smaller")
            return [self.get(smaller, self.parse_picture, meta={"qualia_image": request.meta["qualia_image"]})]
        stats = self.crawler.stats
        url = request.url if request is not None else "?"
        if failure.check(IgnoreRequest) and "robots.txt" in str(failure.value):
            # One line per site: a rule forbids a whole family of URLs, not one at a time.
            stats.inc_value("qualia/robots_forbidden")
            host = urlsplit(url).netloc
            if stats.get_value(f"qualia/robots_warned/{host}") is None:
                stats.set_value(f"qualia/robots_warned/{host}", 1)
                self.logger.warning("robots.txt of %s forbids %s (and perhaps more): not fetched", host, shown(url))
            return None
        kind, reason = describe_failure(failure)
        retries = request.meta.get("retry_times", 0) if request is not None else 0
        if retries:
            reason += f" (after {retries} retries)"
        stats.inc_value(f"qualia/failed/{kind}")
        stats.inc_value("qualia/pictures_failed" if request is not None and "qualia_image" in request.meta
                        else "qualia/pages_failed")
        self.logger.warning("skipping %s: %s", shown(url), reason)
        return None

    def load_json(self, response: Response, expected: type) -> Any:
        """The response's JSON if it is of the ``expected`` type, else None (logged, counted).

        An answer that is not JSON at all (cut short, garbled, an HTML error page) is usually a site's
        passing trouble: it is asked again, like a 503, before it is given up on.
        """
        try:
            value = json.loads(response.body)
        except ValueError as e:
            html = response.body.lstrip()[:1] == b"<" or b"html" in response.headers.get(b"Content-Type", b"")
            reason = "an HTML page where JSON was expected" if html else f"broken JSON ({e})"
            if not self.retry(response, reason):
                self.error(response, reason)
                response.meta["qualia_unreadable"] = True  # given up on: a spider may look elsewhere
            return None
        if not isinstance(value, expected):
            self.error(response, f"expected a JSON {expected.__name__}, got {type(value).__name__}")
            return None
        self.crawler.stats.inc_value("qualia/pages_ok")
        return value

    def retry(self, response: Response, reason: str) -> bool:
        """Ask for ``response``'s page again (within RETRY_TIMES); False once the retries are spent."""
        again = get_retry_request(response.request, spider=self, reason=reason)
        if again is None:
            return False
        settings = self.crawler.settings
        again.meta["qualia_backoff"] = wait = growing_wait(settings.getfloat("QUALIA_RETRY_BACKOFF", 1.0),
                                                           settings.getfloat("QUALIA_RETRY_BACKOFF_MAX", 60.0),
                                                           again.meta.get("retry_times", 1))
        if again.meta.get("retry_times") == 1:
            self.logger.warning("%s: %s; asking again in %.1f s", shown(response.url), reason, wait)
        self.crawler.engine.crawl(again)
        return True

    def with_pictures(self, record: Record) -> Iterator[Record | Request]:
        """The record, then a request for each of its images (the pipeline skips known ones)."""
        yield record
        for ref in record.images:
            yield self.get(ref.url, self.parse_picture, meta={"qualia_image": ref.url})

    def parse_picture(self, response: Response) -> Iterator[PictureBytes]:
        yield PictureBytes(url=response.meta["qualia_image"], body=response.body)
