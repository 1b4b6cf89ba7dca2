"""The records of a person's own data export (``crawler.exports``), through the crawl's pipelines:
validated, merged with what a crawl already stored, and their pictures fetched politely (robots.txt,
delay, retries) and stored by content. Nothing here parses: the export was read before the spider starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from scrapy.http import Request

from crawler.items import Record
from crawler.spiders import CorpusSpider


class ImportSpider(CorpusSpider):
    name = "import"

    def __init__(self, records: list[Record] | None = None, **kwargs: Any) -> None:
        super().__init__(names=[], depth=1, **kwargs)
        self.records = list(records or [])

    async def start(self) -> AsyncIterator[Record | Request]:
        for record in self.records:
            for out in self.with_pictures(record):
                yield out
