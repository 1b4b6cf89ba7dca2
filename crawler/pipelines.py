"""Where crawled things land: validated, de-duplicated and written to the profile's corpus.

Both spiders of a crawl write through one ``CorpusSink`` (one SQLite connection on the reactor
thread): items are upserted by id, so a thing seen twice stays one row; pictures are stored by
content hash, so one picture under two URLs is one file. Writes are committed every
``QUALIA_COMMIT_EVERY`` changes and when the crawl closes, so a killed crawl loses one batch at most.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.settings import BaseSettings

from crawler.items import CAPPED_KINDS, KINDS, ROLES, SOURCES, PictureBytes, Record
from crawler.spiders import is_web_url
from qualia import workspace
from qualia.corpus import Corpus, InvalidImage

log = logging.getLogger(__name__)

_SINKS: dict[str, CorpusSink] = {}


class CorpusSink:
    """One crawl's writer into a profile's corpus, shared by its spiders."""

    def __init__(self, profile: str, max_items: int | None = None, commit_every: int = 100) -> None:
        self.profile = workspace.check_profile_name(profile)
        self.corpus = Corpus.for_profile(profile)
        self.max_items = max_items
        self.commit_every = max(1, commit_every)
        self.pending = 0
        self.stats: Counter[str] = Counter()

    @property
    def full(self) -> bool:
        return self.max_items is not None and self.stats["capped_items_new"] >= self.max_items

    def has_image(self, url: str) -> bool:
        return self.corpus.has_image_url(url)

    def is_shown(self, url: str) -> bool:
        return self.corpus.db.execute("SELECT 1 FROM image_refs WHERE url=? LIMIT 1", (url,)).fetchone() is not None

    def write(self, record: Record) -> bool | None:
        """Upsert ``record``; True if it is new, False if refreshed, None if refused (``max_items``)."""
        db = self.corpus.db
        row = db.execute("SELECT data FROM items WHERE id=?", (record.id,)).fetchone()
        is_new = row is None
        if is_new and record.kind in CAPPED_KINDS and self.full:
            return None
        known = json.loads(row[0]) if row is not None and row[0] else {}
        if is_new or record.complete:
            data = {**known, **record.data}
            fields = {"title": record.title, "text": record.text, "url": record.url,
                      "published_at": record.published_at}
        else:  # a sighting in a listing only adds what is not known yet
            data = {**record.data, **known}
            fields = {}
        self.corpus.upsert_item(record.id, source=record.source, kind=record.kind, degree=record.degree,
                                data=data, via=record.via, **fields)
        for ref in record.images:
            if not (is_new or record.complete) and db.execute(
                    "SELECT 1 FROM image_refs WHERE item_id=? AND url=?", (record.id, ref.url)).fetchone():
                continue
            self.corpus.add_image_ref(record.id, ref.url, ref.role, ref.alt, ref.caption, ref.position)
        self.stats["items_new" if is_new else "items_refreshed"] += 1
        if is_new and record.kind in CAPPED_KINDS:
            self.stats["capped_items_new"] += 1
        self.tick()
        return is_new

    def store_picture(self, picture: PictureBytes) -> str:
        """Validate and store picture bytes (``InvalidImage`` if they are not a picture)."""
        # Images are never deleted, so a new one raises max(rowid): an index lookup where count(*)
        # would scan the whole table for every picture.
        newest = "SELECT coalesce(max(rowid), 0) FROM images"
        known = self.corpus.db.execute(newest).fetchone()[0]
        sha = self.corpus.store_image(picture.url, picture.body)
        stored = self.corpus.db.execute(newest).fetchone()[0]
        self.stats["images_stored" if stored > known else "images_already_known"] += 1
        self.tick()
        return sha

    def tick(self) -> None:
        self.pending += 1
        if self.pending >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        self.corpus.commit()
        self.pending = 0

    def close(self) -> None:
        self.commit()
        self.corpus.close()


def open_sink(profile: str, max_items: int | None = None, commit_every: int = 100) -> CorpusSink:
    """Open (or return the already open) sink of ``profile`` for this process."""
    if profile not in _SINKS:
        _SINKS[profile] = CorpusSink(profile, max_items, commit_every)
    return _SINKS[profile]


def close_sink(profile: str) -> None:
    sink = _SINKS.pop(profile, None)
    if sink is not None:
        sink.close()


def sink_for(settings: BaseSettings) -> CorpusSink:
    max_items = settings.get("QUALIA_MAX_ITEMS")
    return open_sink(settings.get("QUALIA_PROFILE"), int(max_items) if max_items is not None else None,
                     settings.getint("QUALIA_COMMIT_EVERY", 100))


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
        self.sink = sink_for(crawler.settings)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CorpusPipeline:
        return cls(crawler)

    def process_item(self, item: Any) -> Any:
        stats = self.crawler.stats
        if isinstance(item, PictureBytes):
            try:
                self.sink.store_picture(item)
            except InvalidImage as e:
                stats.inc_value("qualia/images_invalid")
                raise DropItem(f"picture from {item.url} not stored: {e}") from e
            stats.inc_value("qualia/pictures")
            return item
        if self.sink.write(item) is None:
            stats.inc_value("qualia/items_refused_max_items")
            raise DropItem(f"{item.id} not stored: --max-items reached", log_level="DEBUG")
        stats.inc_value("qualia/records")
        return item

    def close_spider(self) -> None:
        self.sink.commit()
