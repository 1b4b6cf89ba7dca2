"""How requests are judged before they go out: by degree, by what the corpus already holds, and,
after a failure, by how long to wait before trying again."""

from __future__ import annotations

import asyncio
import hashlib
import logging

from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings
from scrapy.utils.request import RequestFingerprinter
from twisted.python.failure import Failure

from crawler.pipelines import CorpusSink, corpus_sink
from crawler.problems import Skipped, describe_failure, growing_wait, shown

log = logging.getLogger(__name__)


class DegreeAwareFingerprinter:
    """Scrapy's fingerprint plus ``meta["degree"]``.

    A page first met far from the person must be fetched again when a closer path reaches it, so
    that what it lists gets the lower degree; the duplicate filter (persisted in JOBDIR, so resumes
    agree) therefore tells apart the same URL at different degrees.
    """

    def __init__(self, crawler: Crawler | None = None) -> None:
        self.plain = RequestFingerprinter(crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DegreeAwareFingerprinter:
        return cls(crawler)

    def fingerprint(self, request: Request) -> bytes:
        base = self.plain.fingerprint(request)
        degree = request.meta.get("degree")
        return base if degree is None else hashlib.sha1(base + b"|degree=%d" % degree).digest()


class CorpusAwareRequests:
    """Drops requests the corpus makes pointless.

    Images already stored under that URL are not fetched again (a repeated crawl adds only what is
    new), nor images no stored item shows (their item was dropped); once ``--max-items`` is reached,
    no more pages are fetched, only the images of what was stored.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CorpusAwareRequests:
        return cls(crawler)

    @property
    def sink(self) -> CorpusSink:
        return corpus_sink(self.crawler)

    @property
    def source(self) -> str:
        """The source this crawler's spider crawls (each source has its own --max-items)."""
        return getattr(self.crawler.spider, "source", "") or ""

    def process_request(self, request: Request) -> None:
        url = request.meta.get("qualia_image")
        stats = self.crawler.stats
        if url is not None:
            if self.sink.has_image(url):
                stats.inc_value("qualia/images_already_stored")
                raise Skipped(f"image already stored: {url}")
            if not self.sink.is_shown(url):
                raise Skipped(f"no stored item shows {url}")
        elif request.meta.get("degree") is not None and self.sink.full(self.source):
            stats.inc_value("qualia/pages_skipped_max_items")
            raise Skipped("--max-items reached")
        elif request.meta.get("qualia_done") is not None and self.known(request):
            stats.inc_value("qualia/pages_skipped_known")
            raise Skipped(f"read to its end by an earlier crawl: {request.meta['qualia_done']}")

    def known(self, request: Request) -> bool:
        """Whether an earlier crawl read what ``request`` asks for (``meta["qualia_done"]``, see
        ``crawler.spiders.CorpusSpider.once``), so that asking again would only find what is stored.

        A detail page is known once its item was stored from it; its pictures that never arrived are
        asked for now. The first page of a feed is always read (new things come first); a later page
        is skipped when the feed was read to its end before and every item of the page before it
        is stored already: archive paging stops at known posts.
        """
        key = request.meta["qualia_done"]
        if key.startswith("detail:"):
            if not self.sink.is_done(key):
                return False
            spider = self.crawler.spider
            for url in self.sink.unfetched_image_urls(key.removeprefix("detail:")):
                self.crawler.engine.crawl(spider.get(url, spider.parse_picture, meta={"qualia_image": url}))
            return True
        degree = request.meta.get("degree", 0)
        if not any(self.sink.is_done(f"{key}@{d}") for d in range(degree + 1)):
            return False
        before = request.meta.get("qualia_after")
        if before is None:  # a first page, or a one-page answer
            return not request.meta.get("qualia_paged", False)
        return all(self.sink.has_item(item_id) for item_id in before)


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retry (429 and 5xx included), waiting before each new attempt.

    The wait is the site's ``Retry-After`` when it gives seconds, else ``QUALIA_RETRY_BACKOFF``
    doubled per attempt, capped at ``QUALIA_RETRY_BACKOFF_MAX``.
    """

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.backoff = settings.getfloat("QUALIA_RETRY_BACKOFF", 1.0)
        self.backoff_max = settings.getfloat("QUALIA_RETRY_BACKOFF_MAX", 60.0)

    def wait_for(self, retry: Request, response: Response | None) -> float:
        if response is not None:
            after = response.headers.get(b"Retry-After")
            if after and after.strip().isdigit():
                return min(float(after), self.backoff_max)
        return growing_wait(self.backoff, self.backoff_max, retry.meta.get("retry_times", 1))

    def planned(self, retry: Request, response: Response | None, reason: str) -> Request:
        """``retry`` with its wait; the first retry of a request is said once (later ones only counted)."""
        retry.meta["qualia_backoff"] = wait = self.wait_for(retry, response)
        if retry.meta.get("retry_times") == 1:
            log.warning("%s: %s; asking again in %.1f s", shown(retry.url), reason, wait)
        return retry

    def process_response(self, request: Request, response: Response) -> Request | Response:
        result = super().process_response(request, response)
        if isinstance(result, Request):
            return self.planned(result, response, f"HTTP {response.status}")
        return result

    def process_exception(self, request: Request, exception: Exception) -> Request | Response | None:
        result = super().process_exception(request, exception)
        if isinstance(result, Request):
            return self.planned(result, None, describe_failure(Failure(exception))[1])
        return result

    async def process_request(self, request: Request) -> None:
        wait = request.meta.pop("qualia_backoff", 0)
        if wait > 0:
            log.debug("waiting %.2f s before retrying %s", wait, request.url)
            await asyncio.sleep(wait)
