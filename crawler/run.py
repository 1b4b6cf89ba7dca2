"""Run a crawl: both spiders in one Scrapy process, writing into one profile's corpus.

Scrapy's Twisted reactor cannot be restarted, so ``crawl`` runs once per process (tests run it in
a subprocess: ``python -m crawler``). An interrupted crawl leaves its queue in
``profiles/<p>/crawl_job/<spider>/`` and the next crawl of that profile resumes from it; a crawl
that finished removes it, so the next one starts over and adds only what is new.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sys
import time
from typing import Any

from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings

from crawler import settings as default_settings
from crawler.pipelines import close_sink, open_sink
from crawler.spiders.pinterest import PinterestSpider
from crawler.spiders.substack import SubstackSpider
from qualia import workspace

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_URLS = {key: getattr(default_settings, key) for key in
                ("QUALIA_SUBSTACK_URL", "QUALIA_SUBSTACK_PUBLICATION_URL", "QUALIA_PINTEREST_URL")}
_crawled = False


def source_urls(environ: dict[str, str] | None = None) -> dict[str, str | None]:
    """Base URLs of the sources, from the environment (read at call time), else the real sites."""
    env = os.environ if environ is None else environ
    urls = {key: (env.get(key) or default) for key, default in DEFAULT_URLS.items()}
    template = urls["QUALIA_SUBSTACK_PUBLICATION_URL"]
    if template is not None and "{subdomain}" not in template:
        raise ValueError(f"QUALIA_SUBSTACK_PUBLICATION_URL must contain '{{subdomain}}': {template!r}")
    for key, url in urls.items():
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{key} must be an http(s) URL: {url!r}")
    return urls


def check_names(names: list[str], what: str) -> list[str]:
    checked = []
    for name in names:
        bare = name.strip().lstrip("@") if isinstance(name, str) else ""
        if not NAME.match(bare):
            raise ValueError(f"invalid {what} {name!r}: use 1-64 letters, digits, '_', '.' or '-'")
        checked.append(bare)
    return list(dict.fromkeys(checked))


def crawl(profile: str, substack: list[str], pinterest: list[str], depth: int = 2,
          max_items: int | None = None, delay: float = 1.0, progress: bool = False,
          log_level: str | None = None) -> dict[str, Any]:
    """Crawl the given Substack handles and Pinterest users into ``profile``'s corpus.

    Returns a small stats dict: items new/refreshed, images stored, errors, requests, and each
    spider's finish reason. Raises ValueError on bad arguments (before touching anything).
    """
    global _crawled
    workspace.check_profile_name(profile)
    substack = check_names(list(substack), "Substack handle")
    pinterest = check_names(list(pinterest), "Pinterest username")
    if not substack and not pinterest:
        raise ValueError("nothing to crawl: give at least one Substack handle or Pinterest username")
    if depth not in (1, 2):
        raise ValueError(f"depth must be 1 or 2, not {depth!r}")
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be at least 1, not {max_items!r}")
    if not 0 <= delay < math.inf:  # NaN fails this too
        raise ValueError(f"delay must be a finite number of seconds, 0 or more, not {delay!r}")
    urls = source_urls()
    if _crawled:
        raise RuntimeError("crawl() runs Scrapy's reactor, which cannot restart: one crawl per process")
    _crawled = True

    job_root = workspace.profile_dir(profile) / "crawl_job"
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    settings.setdict({
        **urls,
        "QUALIA_PROFILE": profile,
        "QUALIA_DEPTH": depth,
        "QUALIA_MAX_ITEMS": max_items,
        "QUALIA_JOB_ROOT": str(job_root),
        "DOWNLOAD_DELAY": delay,
        "AUTOTHROTTLE_ENABLED": delay > 0,
        "AUTOTHROTTLE_START_DELAY": max(delay, 0.1),
        "QUALIA_RETRY_BACKOFF": 2 * delay if delay > 0 else 0.05,
        "LOG_LEVEL": log_level or "WARNING",
        # A caller that configured logging (the qualia CLI) keeps its handlers and levels.
        "LOG_INSTALL_ROOT_HANDLER": not logging.root.handlers,
    }, priority="cmdline")

    sink = open_sink(profile, max_items, settings.getint("QUALIA_COMMIT_EVERY"))
    crawlers = []
    ticker = None
    started = time.monotonic()
    try:
        process = _quiet_process(settings)
        for spidercls, names in ((SubstackSpider, substack), (PinterestSpider, pinterest)):
            if names:
                crawler = process.create_crawler(spidercls)
                crawlers.append(crawler)
                process.crawl(crawler, names=names, depth=depth)
        ticker = _progress_ticker(sink) if progress else None
        process.start()
    finally:
        if ticker is not None:
            ticker.stop()
            sys.stderr.write("\n")
        counts = dict(sink.stats)
        close_sink(profile)

    reasons: dict[str, str] = {}
    totals: dict[str, int] = {}
    for crawler in crawlers:
        stats = crawler.stats.get_stats()
        name = crawler.spidercls.name
        reasons[name] = str(stats.get("finish_reason", "not started"))
        for key in ("downloader/request_count", "qualia/parse_errors", "qualia/images_invalid",
                    "httperror/response_ignored_count", "retry/count", "retry/max_reached",
                    "qualia/images_already_stored"):
            totals[key] = totals.get(key, 0) + int(stats.get(key, 0))
        if reasons[name] == "finished":
            shutil.rmtree(job_root / name, ignore_errors=True)
    if job_root.is_dir() and not any(job_root.iterdir()):
        job_root.rmdir()
    errors = (totals["qualia/parse_errors"] + totals["qualia/images_invalid"]
              + totals["httperror/response_ignored_count"] + totals["retry/max_reached"])
    result = {
        "profile": profile,
        "depth": depth,
        "items_new": counts.get("items_new", 0),
        "items_refreshed": counts.get("items_refreshed", 0),
        "images_stored": counts.get("images_stored", 0),
        "images_skipped_known": totals["qualia/images_already_stored"],
        "errors": errors,
        "retries": totals["retry/count"],
        "requests": totals["downloader/request_count"],
        "finish_reasons": reasons,
        "resumable": any(r != "finished" for r in reasons.values()),
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    log.info("crawl of %s done: %s", profile, result)
    return result


def _quiet_process(settings: Settings) -> CrawlerProcess:
    """A CrawlerProcess whose loggers follow LOG_LEVEL even where the caller's root handler lets
    everything through (CrawlerProcess resets the "scrapy" logger to DEBUG and logs its banner)."""
    level = logging.getLevelName(str(settings.get("LOG_LEVEL")).upper())
    level = level if isinstance(level, int) else logging.WARNING
    previous = logging.root.manager.disable
    logging.disable(max(previous, level - 1))
    try:
        process = CrawlerProcess(settings)
    finally:
        logging.disable(previous)
    for name in ("scrapy", "twisted", "py.warnings"):
        logging.getLogger(name).setLevel(level)
    return process


def _progress_ticker(sink: Any) -> Any:
    """A one-line status on stderr, refreshed every half second while the reactor runs."""
    from twisted.internet import task

    def show() -> None:
        s = sink.stats
        sys.stderr.write(f"\rcrawling: {s['items_new']} new items, {s['items_refreshed']} refreshed, "
                         f"{s['images_stored']} pictures stored ")
        sys.stderr.flush()

    ticker = task.LoopingCall(show)
    ticker.start(0.5, now=False)
    return ticker
