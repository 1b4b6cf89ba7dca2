"""Where crawled things land: validated, de-duplicated and written to the profile's corpus.

All spiders of a crawl write through one ``CorpusSink`` (one SQLite connection on the reactor
thread): items are upserted by id, so a thing seen twice stays one row; pictures are stored by
content hash, so one picture under two URLs is one file. Writes are committed every
``QUALIA_COMMIT_EVERY`` changes and when the crawl closes, so a killed crawl loses one batch at most.

Components find the sink on the crawler (``corpus_sink(crawler)``): ``crawler.run.crawl`` puts one
sink on every crawler it starts, so its spiders share it; a crawler made any other way (a test's
``get_crawler``) gets its own from its settings, closed when its spider closes.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from crawler.items import CAPPED_KINDS, KINDS, ROLES, SOURCES, Done, PictureBytes, Record
from crawler.urls import is_web_url
from qualia.corpus import Corpus
from qualia.errors import InvalidArgument, InvalidImage
from qualia.workspace import Workspace, check_profile_name

log = logging.getLogger(__name__)

SINK_ATTRIBUTE = "qualia_sink"


def merge_data(known: dict[str, Any], seen: dict[str, Any], authoritative: bool) -> dict[str, Any]:
    """What an item's ``data`` becomes when ``seen`` arrives on top of what is ``known``.

    A missing or null field never erases a known value: a detail page may carry less than the listing
    that led to it (a pin's detail without its ``board`` or ``pinner``), and sites drop fields without
    notice. Where both have a value, an ``authoritative`` answer (the thing's own page) wins; a listing
    only fills what is not known yet. Nested objects merge by the same rule, key by key.
    """
    merged = dict(known)
    for key, value in seen.items():
        old = merged.get(key)
        if value is None:
            continue
        if isinstance(old, dict) and isinstance(value, dict):
            merged[key] = merge_data(old, value, authoritative)
        elif old is None or authoritative:
            merged[key] = value
    return merged


class CorpusSink:
    """One crawl's writer into a profile's corpus, shared by its spiders."""

    def __init__(self, ws: Workspace, profile: str, max_items: int | None = None, commit_every: int = 100) -> None:
        self.profile = check_profile_name(profile)
        self.corpus = Corpus.open(ws, profile)
        self.max_items = max_items
        self.commit_every = max(1, commit_every)
        self.pending = 0
        self.stats: Counter[str] = Counter()
        # A detail page's done mark waits one commit before it is written: by then every record read
        # before it is stored, so a kill never leaves a page marked done whose records were lost.
        self.marks_waiting: list[str] = []
        self.marks_ready: list[str] = []

    @classmethod
    def from_settings(cls, settings: Any) -> CorpusSink:
        root, max_items = settings.get("QUALIA_WORKSPACE"), settings.get("QUALIA_MAX_ITEMS")
        if not root:
            raise InvalidArgument("the crawl's settings name no workspace (QUALIA_WORKSPACE)")
        return cls(
            Workspace(Path(root)),
            settings.get("QUALIA_PROFILE"),
            int(max_items) if max_items is not None else None,
            settings.getint("QUALIA_COMMIT_EVERY", 100),
        )

    def full(self, source: str) -> bool:
        """Whether ``source`` has stored its ``max_items`` new posts or pins (the cap is per source)."""
        return self.max_items is not None and self.stats[f"capped_items_new:{source}"] >= self.max_items

    def is_done(self, key: str) -> bool:
        return self.corpus.is_done(key)

    def has_item(self, item_id: str) -> bool:
        return self.corpus.has_item(item_id)

    def unfetched_image_urls(self, item_id: str) -> list[str]:
        return self.corpus.unfetched_image_urls(item_id)

    def mark_done(self, key: str) -> None:
        self.corpus.mark_done(key)
        self.tick()

    def has_image(self, url: str) -> bool:
        return self.corpus.has_image_url(url)

    def is_shown(self, url: str) -> bool:
        return self.corpus.is_image_shown(url)

    def write(self, record: Record) -> bool | None:
        """Upsert ``record``; True if it is new, False if refreshed, None if refused (``max_items``)."""
        known = self.corpus.item_data(record.id)
        is_new = known is None
        if is_new and record.kind in CAPPED_KINDS and self.full(record.source):
            return None
        data = merge_data(known or {}, record.data, record.complete)
        if is_new or record.complete:
            fields = {"title": record.title, "text": record.text, "url": record.url,
                      "published_at": record.published_at}
        else:  # a sighting in a listing only adds what is not known yet
            fields = {}
        self.corpus.upsert_item(record.id, source=record.source, kind=record.kind, degree=record.degree,
                                data=data, via=record.via, **fields)
        for ref in record.images:
            if not (is_new or record.complete) and self.corpus.has_image_ref(record.id, ref.url):
                continue
            self.corpus.add_image_ref(record.id, ref.url, ref.role, ref.alt, ref.caption, ref.position, ref.context)
        if record.complete:  # its own page was read: a later crawl need not ask for it again
            self.marks_waiting.append(f"detail:{record.id}")
        self.stats["items_new" if is_new else "items_refreshed"] += 1
        if is_new and record.kind in CAPPED_KINDS:
            self.stats[f"capped_items_new:{record.source}"] += 1
        self.tick()
        return is_new

    def store_picture(self, picture: PictureBytes) -> str:
        """Validate and store picture bytes (``InvalidImage`` if they are not a picture)."""
        sha, new = self.corpus.store_image(picture.url, picture.body)
        self.stats["images_stored" if new else "images_already_known"] += 1
        self.tick()
        return sha

    def tick(self) -> None:
        self.pending += 1
        if self.pending >= self.commit_every:
            self.commit()

    def commit(self, final: bool = False) -> None:
        for key in self.marks_ready + (self.marks_waiting if final else []):
            self.corpus.mark_done(key)
        self.marks_ready, self.marks_waiting = ([], []) if final else (self.marks_waiting, [])
        self.corpus.commit()
        self.pending = 0

    def close(self) -> None:
        self.commit(final=True)
        self.corpus.close()


def corpus_sink(crawler: Crawler) -> CorpusSink:
    """The sink this crawler writes through: the one its crawl attached, else one of its own."""
    sink = getattr(crawler, SINK_ATTRIBUTE, None)
    if sink is None:
        sink = CorpusSink.from_settings(crawler.settings)
        setattr(crawler, SINK_ATTRIBUTE, sink)
        crawler.signals.connect(sink.close, signal=signals.spider_closed)
    return sink


class ValidatePipeline:
    """Refuses what would corrupt the corpus: unknown sources or kinds, ids that do not match them,
    degrees beyond the crawl's depth, image refs that are not web URLs or have unknown roles."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.depth = crawler.settings.getint("QUALIA_DEPTH", 2)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ValidatePipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, Done):
            return item
        if isinstance(item, PictureBytes):
            if not is_web_url(item.url) or not item.body:
                raise DropItem(f"empty or unaddressed picture from {item.url!r}")
            return item
        if not isinstance(item, Record):
            raise DropItem(f"not a qualia item: {type(item).__name__}")
        if item.source not in SOURCES or item.kind not in KINDS[item.source]:
            raise DropItem(f"unknown source/kind {item.source}/{item.kind} for {item.id}")
        prefix = f"{item.source}:{item.kind}:"
        if not item.id.startswith(prefix) or len(item.id) == len(prefix) or any(c.isspace() for c in item.id):
            raise DropItem(f"malformed id {item.id!r}")
        if not 0 <= item.degree <= self.depth:
            raise DropItem(f"{item.id} is at degree {item.degree}, beyond depth {self.depth}")
        if item.via is not None and (len(item.via) != 2 or not all(isinstance(v, str) and v for v in item.via)):
            raise DropItem(f"malformed edge {item.via!r} to {item.id}")
        kept = [ref for ref in item.images if ref.role in ROLES and is_web_url(ref.url)]
        if len(kept) < len(item.images):
            log.warning("dropped %d malformed image refs of %s", len(item.images) - len(kept), item.id)
            item.images = kept
        return item


class CorpusPipeline:
    """Writes records and pictures through the crawl's ``CorpusSink``."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.sink = corpus_sink(crawler)
        self.seen: set[str] = set()  # ids written by this crawler, so "qualia/items" counts each once
        # Feeds read to their end are marked done only when the whole crawl of this source finished:
        # a skipped feed hides what its items lead to, which a killed crawl may not have reached.
        self.done: list[str] = []
        crawler.signals.connect(self.spider_closed, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CorpusPipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        stats = self.crawler.stats
        if isinstance(item, Done):
            self.done.append(item.key)
            return item
        if isinstance(item, PictureBytes):
            try:
                self.sink.store_picture(item)
            except InvalidImage as e:
                stats.inc_value("qualia/images_invalid")
                raise DropItem(f"picture {item.url}: {e}") from e
            stats.inc_value("qualia/pictures")
            return item
        if self.sink.write(item) is None:
            stats.inc_value("qualia/items_refused_max_items")
            raise DropItem(f"{item.id} not stored: --max-items reached", log_level="DEBUG")
        stats.inc_value("qualia/records")
        if item.id not in self.seen:
            self.seen.add(item.id)
            stats.inc_value("qualia/items")
        return item

    def close_spider(self) -> None:
        self.sink.commit()

    def spider_closed(self, spider: Any, reason: str) -> None:
        # a crawl capped by --max-items refused items its feeds listed: none of them is done
        if reason == "finished" and self.sink.max_items is None:
            for key in self.done:
                self.sink.mark_done(key)
            self.sink.commit()
