"""Run a crawl: both spiders in one Scrapy process, writing into one profile's corpus.

Scrapy's Twisted reactor cannot be restarted, so a process runs one crawl (tests run it in a
subprocess: ``python -m crawler``); a second call says so (``CrawlFailed``). An interrupted crawl
leaves its queue in ``profiles/<p>/crawl_job/<spider>/`` and the next crawl of that profile resumes
from it; a crawl that finished removes it, so the next one starts over and adds only what is new.

Where the sites live is passed in as values (``urls``, keyed by the settings of ``crawler.settings``);
nothing here reads the environment.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scrapy.crawler import Crawler, CrawlerProcess
from scrapy.settings import Settings
from tqdm.contrib.logging import logging_redirect_tqdm
from twisted.internet.error import ReactorNotRestartable

from crawler import settings as default_settings
from crawler.exports import ExportRead
from crawler.items import PictureBytes
from crawler.pipelines import SINK_ATTRIBUTE, CorpusSink
from crawler.problems import SAID_BY_QUALIA, failure_words
from crawler.spiders.imports import ImportSpider
from crawler.spiders.pinterest import PinterestSpider
from crawler.spiders.substack import SubstackSpider
from qualia.errors import CrawlFailed, InvalidArgument, InvalidImage
from qualia.progress import bar
from qualia.workspace import Workspace, check_profile_name

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
URL_SETTINGS = ("QUALIA_SUBSTACK_URL", "QUALIA_SUBSTACK_PUBLICATION_URL", "QUALIA_PINTEREST_URL")
DEFAULT_URLS = {key: getattr(default_settings, key) for key in URL_SETTINGS}
# crawler stats summed over both spiders into the crawl's result
_TOTALLED = ("downloader/request_count", "qualia/parse_errors", "qualia/images_invalid", "qualia/pages_failed",
             "qualia/pictures_failed", "qualia/robots_forbidden", "retry/count", "qualia/images_already_stored")


@dataclass(frozen=True)
class CrawlRequest:
    """What to crawl, checked: the names, how far, how politely, and where the sites are."""

    profile: str
    substack: list[str]
    pinterest: list[str]
    depth: int
    max_items: int | None
    delay: float
    urls: dict[str, str | None]


def source_urls(given: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """The sites' base URLs: those ``given`` (by setting name; empty means unset), else the real sites."""
    given = given or {}
    urls = {key: (given.get(key) or default) for key, default in DEFAULT_URLS.items()}
    template = urls["QUALIA_SUBSTACK_PUBLICATION_URL"]
    if template is not None and "{subdomain}" not in template:
        raise InvalidArgument(f"QUALIA_SUBSTACK_PUBLICATION_URL must contain '{{subdomain}}': {template[:200]!r}")
    for key, url in urls.items():
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise InvalidArgument(f"{key} must be an http(s) URL: {url[:200]!r}")
    return urls


def check_names(names: list[str], what: str) -> list[str]:
    checked = []
    for name in names:
        bare = name.strip().lstrip("@") if isinstance(name, str) else ""
        if not NAME.match(bare):
            shown = name[:80] if isinstance(name, str) else type(name).__name__
            raise InvalidArgument(f"invalid {what} {shown!r}: use 1-64 letters, digits, '_', '.' or '-'")
        checked.append(bare)
    return list(dict.fromkeys(checked))


def check_request(profile: str, substack: list[str], pinterest: list[str], depth: int, max_items: int | None,
                  delay: float, urls: Mapping[str, str | None] | None) -> CrawlRequest:
    """The crawl asked for, checked before anything is touched (``InvalidArgument`` otherwise)."""
    check_profile_name(profile)
    substack = check_names(list(substack), "Substack handle")
    pinterest = check_names(list(pinterest), "Pinterest username")
    if not substack and not pinterest:
        raise InvalidArgument("nothing to crawl: give at least one Substack handle or Pinterest username")
    if depth not in (1, 2):
        raise InvalidArgument(f"depth must be 1 or 2, not {depth!r}")
    if max_items is not None and max_items < 1:
        raise InvalidArgument(f"max_items must be at least 1, not {max_items!r}")
    if not 0 <= delay < math.inf:  # NaN fails this too
        raise InvalidArgument(f"delay must be a finite number of seconds, 0 or more, not {delay!r}")
    return CrawlRequest(profile, substack, pinterest, depth, max_items, delay, source_urls(urls))


def crawl_settings(ws: Workspace, request: CrawlRequest, log_level: str | None = None) -> Settings:
    """The project settings with this crawl's values on top."""
    delay = request.delay
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    settings.setdict({
        **request.urls,
        "QUALIA_WORKSPACE": str(ws.root),
        "QUALIA_PROFILE": request.profile,
        "QUALIA_DEPTH": request.depth,
        "QUALIA_MAX_ITEMS": request.max_items,
        "QUALIA_JOB_ROOT": str(ws.crawl_job_dir(request.profile)),
        "DOWNLOAD_DELAY": delay,
        # --delay 0 says the site is a local mirror (the sample site): no one to be polite to, and at
        # two requests in flight Scrapy's engine idles about a second now and then (a depth-2 crawl of
        # the sample site took 52 s instead of 7 s)
        "CONCURRENT_REQUESTS_PER_DOMAIN": (settings.getint("QUALIA_MIRROR_CONCURRENCY") if delay == 0
                                           else settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")),
        "AUTOTHROTTLE_ENABLED": delay > 0,
        "AUTOTHROTTLE_START_DELAY": max(delay, 0.1),
        "QUALIA_RETRY_BACKOFF": 2 * delay if delay > 0 else 0.05,
        "LOG_LEVEL": log_level or "WARNING",
        # A caller that configured logging (the qualia CLI) keeps its handlers and levels.
        "LOG_INSTALL_ROOT_HANDLER": not logging.root.handlers,
    }, priority="cmdline")
    return settings


@contextlib.contextmanager
def _trusted_queues(job_root: Path, spiders: list[str]) -> Iterator[None]:
    """Resume only what a clean stop left.

    Scrapy's resumable queue (JOBDIR) records a request as seen when it is scheduled, and the corpus
    commits every ``QUALIA_COMMIT_EVERY`` writes: after a ``kill -9`` the queue knows requests whose
    answers never reached the corpus, and a resume would never ask for them again. A marker lives
    beside each queue while its crawl runs; a queue found with one is dropped, and that source starts
    over (the pictures already stored are not fetched again). A stop by Ctrl-C closes cleanly and resumes.
    """
    markers = [job_root / f".{name}.running" for name in spiders]
    for marker, name in zip(markers, spiders):
        if marker.exists():
            log.warning("the last crawl of %s was killed; its queue cannot be trusted: starting it over", name)
            shutil.rmtree(job_root / name, ignore_errors=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    yield
    for marker in markers:  # reached only when the reactor stopped by itself, i.e. the queues were closed
        marker.unlink(missing_ok=True)


def _run_spiders(settings: Settings, spiders: list[tuple[type, dict[str, Any]]], sink: CorpusSink,
                 progress: bool) -> list[Crawler]:
    """The spiders (each with its arguments) on one reactor, writing through ``sink``; returns their
    crawlers once they are done."""
    crawlers = []
    ticker = None
    try:
        process = _quiet_process(settings)
        for spidercls, arguments in spiders:
            crawler = process.create_crawler(spidercls)
            setattr(crawler, SINK_ATTRIBUTE, sink)  # the spiders share one writer (pipelines.corpus_sink)
            crawlers.append(crawler)
            process.crawl(crawler, **arguments)
        ticker = _ProgressLines(crawlers) if progress else None
        # log lines go above the live lines, not through them
        with logging_redirect_tqdm() if progress else contextlib.nullcontext():
            process.start()
    except ReactorNotRestartable as e:
        raise CrawlFailed("this process has already run a crawl (Scrapy's reactor cannot restart); "
                          "run each crawl in its own process") from e
    finally:
        if ticker is not None:
            ticker.stop()
    return crawlers


def source_summary(stats: Mapping[str, Any]) -> dict[str, Any]:
    """What one source's crawl fetched and lost: pages read, items and pictures stored, and each
    kind of failure with how often it happened (``crawler.problems.failure_words``)."""
    failures = {failure_words(key.removeprefix("qualia/failed/")): int(n)
                for key, n in sorted(stats.items()) if key.startswith("qualia/failed/")}
    for key, words in (("qualia/parse_errors", "unreadable answer"), ("qualia/images_invalid", "not a usable picture"),
                       ("qualia/robots_forbidden", "forbidden by robots.txt")):
        if stats.get(key):
            failures[words] = int(stats[key])
    return {
        "pages": int(stats.get("qualia/pages_ok", 0)),
        "items": int(stats.get("qualia/items", 0)),
        "pictures": int(stats.get("qualia/pictures", 0)),
        "pages_lost": int(stats.get("qualia/pages_failed", 0)) + int(stats.get("qualia/parse_errors", 0)),
        "pictures_lost": int(stats.get("qualia/pictures_failed", 0)) + int(stats.get("qualia/images_invalid", 0)),
        "failures": failures,
    }


def nothing_fetched(result: Mapping[str, Any]) -> str | None:
    """Why a finished crawl read not one page from any source (one line), or None if it read some."""
    sources = result["sources"]
    if not sources or any(s["pages"] for s in sources.values()):
        return None
    if any(reason != "finished" for reason in result["finish_reasons"].values()):
        return None  # stopped early (Ctrl-C): it resumes; nothing is wrong yet
    by_reason: dict[str, list[str]] = {}
    for name, s in sources.items():
        common = max(s["failures"].items(), key=lambda kv: kv[1])[0] if s["failures"] else "no answer"
        by_reason.setdefault(common, []).append(name)
    return "; ".join(f"{' and '.join(names)}: {reason}" for reason, names in by_reason.items())


def _summary(request: CrawlRequest, crawlers: list[Crawler], counts: Mapping[str, int], job_root: Path,
             elapsed: float) -> dict[str, Any]:
    """The crawl's result; drops the resumable queue of each spider that finished."""
    reasons: dict[str, str] = {}
    totals = dict.fromkeys(_TOTALLED, 0)
    for crawler in crawlers:
        stats = crawler.stats.get_stats()
        name = crawler.spidercls.name
        reasons[name] = str(stats.get("finish_reason", "not started"))
        for key in _TOTALLED:
            totals[key] += int(stats.get(key, 0))
        if reasons[name] == "finished":
            shutil.rmtree(job_root / name, ignore_errors=True)
    if job_root.is_dir() and not any(job_root.iterdir()):
        job_root.rmdir()
    # each thing lost counts once: a page or picture that failed to download (after its retries), an
    # answer that could not be read, a picture that is not one
    errors = (totals["qualia/parse_errors"] + totals["qualia/images_invalid"] + totals["qualia/pages_failed"]
              + totals["qualia/pictures_failed"])
    sources = {crawler.spidercls.name: source_summary(crawler.stats.get_stats()) for crawler in crawlers}
    return {
        "profile": request.profile,
        "depth": request.depth,
        "items_new": counts.get("items_new", 0),
        "items_refreshed": counts.get("items_refreshed", 0),
        "images_stored": counts.get("images_stored", 0),
        "images_skipped_known": totals["qualia/images_already_stored"],
        "errors": errors,
        "retries": totals["retry/count"],
        "requests": totals["downloader/request_count"],
        "robots_forbidden": totals["qualia/robots_forbidden"],
        "sources": sources,
        "finish_reasons": reasons,
        "resumable": any(r != "finished" for r in reasons.values()),
        "elapsed_s": round(elapsed, 2),
    }


def crawl(ws: Workspace, profile: str, substack: list[str], pinterest: list[str], depth: int = 2,
          max_items: int | None = None, delay: float = 1.0, progress: bool = False,
          log_level: str | None = None, urls: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Crawl the given Substack handles and Pinterest users into ``profile``'s corpus in ``ws``.

    ``urls`` maps ``QUALIA_SUBSTACK_URL``, ``QUALIA_SUBSTACK_PUBLICATION_URL`` and ``QUALIA_PINTEREST_URL``
    to base URLs (a mirror, the sample site); missing ones are the real sites. Returns a small stats
    dict: items new/refreshed, images stored, errors, requests, and each spider's finish reason.
    Raises InvalidArgument on bad arguments, before touching anything.
    """
    request = check_request(profile, substack, pinterest, depth, max_items, delay, urls)
    settings = crawl_settings(ws, request, log_level)
    started = time.monotonic()
    sink = CorpusSink(ws, profile, max_items, settings.getint("QUALIA_COMMIT_EVERY"))
    spiders = [(spider, {"names": names, "depth": request.depth})
               for spider, names in ((SubstackSpider, request.substack), (PinterestSpider, request.pinterest)) if names]
    try:
        with _trusted_queues(ws.crawl_job_dir(profile), [spider.name for spider, _ in spiders]):
            crawlers = _run_spiders(settings, spiders, sink, progress)
    finally:
        counts = dict(sink.stats)
        sink.close()
    result = _summary(request, crawlers, counts, ws.crawl_job_dir(profile), time.monotonic() - started)
    log.info("crawl of %s done: %s", profile, result)
    why = nothing_fetched(result)
    if why is not None:
        exports = " or ".join(f"--{name}-export PATH" for name in result["sources"])
        raise CrawlFailed(f"the crawl fetched nothing ({why}); if the sites refuse crawlers, import your own "
                          f"data export instead: qualia import {profile} {exports}")
    return result


def import_export(ws: Workspace, profile: str, read: ExportRead, delay: float = 1.0, progress: bool = False,
                  log_level: str | None = None) -> dict[str, Any]:
    """Store the records of a person's data export (``crawler.exports``) in ``profile``'s corpus, fetching
    the pictures they show as a crawl does (politely, validated, content-addressed). Returns the crawl's
    stats shape, with what the export held under ``import``. Repeating an import adds nothing."""
    check_profile_name(profile)
    if not 0 <= delay < math.inf:
        raise InvalidArgument(f"delay must be a finite number of seconds, 0 or more, not {delay!r}")
    request = CrawlRequest(profile, [], [], 1, None, delay, source_urls(None))
    settings = crawl_settings(ws, request, log_level)
    settings.set("QUALIA_JOB_ROOT", None, priority="cmdline")  # nothing to resume: an import is repeated whole
    started = time.monotonic()
    sink = CorpusSink(ws, profile, None, settings.getint("QUALIA_COMMIT_EVERY"))
    try:
        crawlers = _run_spiders(settings, [(ImportSpider, {"records": read.records})], sink, progress)
    finally:
        counts = dict(sink.stats)
        sink.close()
    result = _summary(request, crawlers, counts, ws.crawl_job_dir(profile), time.monotonic() - started)
    result["import"] = read.summary
    return result


def import_folder(ws: Workspace, profile: str, read: ExportRead, files: Mapping[str, Path]) -> dict[str, Any]:
    """Store a folder's pictures (``crawler.exports.read_folder``) in ``profile``'s corpus: nothing to
    fetch, so no crawl; a picture that does not decode is skipped with its item, and logged once."""
    check_profile_name(profile)
    started = time.monotonic()
    sink = CorpusSink(ws, profile)
    known = 0
    lost: dict[str, int] = {}
    try:
        for record in read.records:
            refs = [ref for ref in record.images if not sink.has_image(ref.url)]
            known += len(record.images) - len(refs)
            try:
                for ref in refs:
                    sink.store_picture(PictureBytes(ref.url, files[ref.url].read_bytes()))
            except (InvalidImage, OSError) as e:
                log.warning("skipping %s: %s", files[ref.url], e)
                reason = "not a usable picture" if isinstance(e, InvalidImage) else "unreadable file"
                lost[reason] = lost.get(reason, 0) + 1
                continue
            sink.write(record)
    finally:
        counts = dict(sink.stats)
        sink.close()
    stored = counts.get("images_stored", 0)
    return {
        "profile": profile, "depth": 1, "items_new": counts.get("items_new", 0),
        "items_refreshed": counts.get("items_refreshed", 0), "images_stored": stored, "images_skipped_known": known,
        "errors": sum(lost.values()), "retries": 0, "requests": 0, "robots_forbidden": 0,
        "sources": {"folder": {"pages": 0, "items": len(read.records) - sum(lost.values()), "pictures": stored,
                               "pages_lost": 0, "pictures_lost": sum(lost.values()), "failures": lost}},
        "finish_reasons": {}, "resumable": False, "elapsed_s": round(time.monotonic() - started, 2),
        "import": read.summary,
    }


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
    for name in SAID_BY_QUALIA:  # the spiders say these once, in their own words
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return process


class _ProgressLines:
    """A live line per source on a terminal (items, pictures, errors), refreshed twice a second while
    the reactor runs; nothing at all when stderr is not a terminal (``qualia.progress.bar``)."""

    def __init__(self, crawlers: list[Crawler]) -> None:
        from twisted.internet import task

        self.crawlers = crawlers
        self.bars = [bar(enabled=True, desc=c.spidercls.name, unit=" items", position=k, leave=True)
                     for k, c in enumerate(crawlers)]
        self.loop = task.LoopingCall(self.show)
        self.loop.start(0.5, now=False)

    def show(self) -> None:
        for crawler, line in zip(self.crawlers, self.bars, strict=True):
            s = source_summary(crawler.stats.get_stats())
            line.update(s["items"] - line.n)
            line.set_postfix_str(f"{s['pictures']} pictures, {s['pages_lost'] + s['pictures_lost']} errors",
                                 refresh=False)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()
        self.show()
        for line in self.bars:
            line.close()
