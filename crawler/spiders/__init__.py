"""What both spiders share: degree bookkeeping, image requests, JSON that never raises.

URLs are built by ``crawler.urls`` and texts cleaned by the text policy (``qualia.text``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy.crawler import Crawler
from scrapy.http import Request, Response

from crawler.items import PictureBytes, Record


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

    def error(self, response: Response, reason: str) -> None:
        self.logger.warning("skipping %s: %s", response.url, reason)
        self.crawler.stats.inc_value("qualia/parse_errors")

    def load_json(self, response: Response, expected: type) -> Any:
        """The response's JSON if it is of the ``expected`` type, else None (logged, counted)."""
        try:
            value = json.loads(response.body)
        except ValueError as e:
            self.error(response, f"broken JSON ({e})")
            return None
        if not isinstance(value, expected):
            self.error(response, f"expected a JSON {expected.__name__}, got {type(value).__name__}")
            return None
        return value

    def with_pictures(self, record: Record) -> Iterator[Record | Request]:
        """The record, then a request for each of its images (the pipeline skips known ones)."""
        yield record
        for ref in record.images:
            yield Request(ref.url, callback=self.parse_picture, meta={"qualia_image": ref.url})

    def parse_picture(self, response: Response) -> Iterator[PictureBytes]:
        yield PictureBytes(url=response.meta["qualia_image"], body=response.body)
