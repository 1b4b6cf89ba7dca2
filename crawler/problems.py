"""What can go wrong with one request, in words a person reads, and what Scrapy itself would log.

A crawl meets failures all the time (a 404, a dropped connection, a picture cut short). Each one is
logged once, as one line naming the URL and the reason, and counted by kind; none ends the crawl and
none shows a traceback. Scrapy's own lines for the same events (its give-up message, its dropped-item
message with the item's repr, its size-limit warning) are turned down, so nothing is said twice.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from scrapy import logformatter
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet import error as net
from twisted.python.failure import Failure

# Scrapy loggers whose messages qualia says itself, once, in its own words (crawler.spiders.CorpusSpider.failed)
SAID_BY_QUALIA = ("scrapy.core.downloader.handlers.http11", "scrapy.downloadermiddlewares.retry",
                  "scrapy.downloadermiddlewares.robotstxt")


def growing_wait(base: float, cap: float, attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...): ``base`` doubled per attempt, capped."""
    return min(base * 2 ** (max(attempt, 1) - 1), cap)


class Skipped(IgnoreRequest):
    """A request the corpus made pointless (picture already stored, --max-items reached): not a failure."""


# kind of failure (a stats key: qualia/failed/<kind>) -> the exceptions that mean it, and its words
KINDS: dict[str, tuple[tuple[type[BaseException], ...], str]] = {
    "dns": ((CannotResolveHostError, net.DNSLookupError), "the host name does not resolve (no network, or a wrong address)"),
    "refused": ((DownloadConnectionRefusedError, net.ConnectionRefusedError), "the connection was refused"),
    "timeout": ((DownloadTimeoutError, net.TimeoutError), "no answer in time"),
    "too_large": ((DownloadCancelledError,), "the answer is over the size limit (DOWNLOAD_MAXSIZE)"),
    "cut_short": ((ResponseDataLossError,), "the answer was cut short"),
    "dropped": ((DownloadFailedError, net.ConnectionLost, net.ConnectionDone, net.ConnectError),
                "the connection was dropped"),
}


def shown(url: str) -> str:
    """``url`` as a log line shows it: a Pinterest resource call without its long ``data`` parameter."""
    return unquote(url.split("&data=", 1)[0]) if "&data=" in url else url


def failure_words(kind: str) -> str:
    """The plain words for a kind of failure (``http_403`` -> ``HTTP 403``)."""
    if kind.startswith("http_"):
        return f"HTTP {kind.removeprefix('http_')}"
    return KINDS[kind][1] if kind in KINDS else kind


def describe_failure(failure: Failure) -> tuple[str, str]:
    """(kind, reason) of a failed request: the kind is a stats key, the reason a few plain words."""
    if failure.check(HttpError):
        kind = f"http_{failure.value.response.status}"
        return kind, failure_words(kind)
    for kind, (exceptions, words) in KINDS.items():
        if failure.check(*exceptions):
            return kind, words
    if failure.check(IgnoreRequest):
        return "ignored", str(failure.value)[:200] or "ignored"
    return "other", f"{type(failure.value).__name__}: {str(failure.value)[:200]}"


class QuietLogFormatter(logformatter.LogFormatter):
    """Scrapy's log formatter without item reprs: a dropped picture is one line, not its bytes."""

    def dropped(self, item: Any, exception: BaseException, response: Any, spider: Any) -> Any:
        level = getattr(exception, "log_level", None) or logging.WARNING
        if isinstance(level, str):
            level = getattr(logging, level)
        return {"level": level, "msg": "skipping %(reason)s", "args": {"reason": str(exception)}}
