"""Scrapy settings of the qualia crawler: polite defaults for the real sites.

``crawler.run.crawl`` overrides the per-crawl values (workspace, profile, depth, delay, base URLs, the JOBDIR root).
Nothing here is secret and nothing is read from the environment at import time.
"""

from qualia import __version__ as _version
from qualia import images as _images

BOT_NAME = "qualia"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

# Say who is asking, and where to read about it: a site can then tell a person's own tool from a bot
# farm (and robots.txt rules can name it). Pinterest wants its JSON headers (crawler/spiders/pinterest.py).
PROJECT_URL = "https://github.com/qualia-project/qualia"
USER_AGENT = f"qualia/{_version} (+{PROJECT_URL}; collects one person's public posts and pins at their request)"
ROBOTSTXT_OBEY = True

# Politeness: one request per DOWNLOAD_DELAY per site, stretched further by AutoThrottle when a site
# slows down. A local mirror is crawled with delay 0 and AutoThrottle off.
DOWNLOAD_DELAY = 1.0
DOWNLOAD_DELAY_JITTER = 0.5  # each wait is DOWNLOAD_DELAY x (1 +- 0.5)
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
CONCURRENT_REQUESTS = 32
# At most two requests in flight per site (crawler.run lifts this for --delay 0, a local mirror).
CONCURRENT_REQUESTS_PER_DOMAIN = 2
QUALIA_MIRROR_CONCURRENCY = 16
DOWNLOAD_TIMEOUT = 30
# Pipelines here are synchronous; Scrapy's default of 100 starts 100 tasks for every callback's output.
CONCURRENT_ITEMS = 8
DOWNLOAD_MAXSIZE = _images.MAX_BYTES  # the corpus refuses larger pictures anyway

# 429 and 5xx are retried after a growing wait (crawler.middlewares.BackoffRetryMiddleware).
RETRY_ENABLED = True
RETRY_TIMES = 4
RETRY_HTTP_CODES = [429, 500, 502, 503, 504, 522, 524, 408]
# Scrapy's list without a host name that does not resolve: with no network that never heals, and
# retrying it made a crawl without network take a minute to say nothing.
RETRY_EXCEPTIONS = [
    "scrapy.exceptions.DownloadConnectionRefusedError",
    "scrapy.exceptions.DownloadFailedError",
    "scrapy.exceptions.DownloadTimeoutError",
    "scrapy.exceptions.ResponseDataLossError",
    "twisted.internet.error.ConnectionDone",
    "twisted.internet.error.ConnectError",
    "twisted.internet.error.ConnectionLost",
    OSError,
]
# Each request given up on is logged once, by the spider's errback (crawler.problems), not by Scrapy too.
RETRY_GIVE_UP_LOG_LEVEL = "DEBUG"
LOG_FORMATTER = "crawler.problems.QuietLogFormatter"
QUALIA_RETRY_BACKOFF = 2.0
QUALIA_RETRY_BACKOFF_MAX = 60.0

REQUEST_FINGERPRINTER_CLASS = "crawler.middlewares.DegreeAwareFingerprinter"
DOWNLOADER_MIDDLEWARES = {
    "crawler.middlewares.CorpusAwareRequests": 90,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.middlewares.BackoffRetryMiddleware": 550,
}
ITEM_PIPELINES = {
    "crawler.pipelines.ValidatePipeline": 100,
    "crawler.pipelines.CorpusPipeline": 300,
}

TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
TELNETCONSOLE_ENABLED = False
LOG_LEVEL = "WARNING"

# qualia's own knobs.
QUALIA_WORKSPACE = None  # the workspace root (a path), set by crawler.run.crawl
QUALIA_PROFILE = None
QUALIA_DEPTH = 2
QUALIA_MAX_ITEMS = None
QUALIA_COMMIT_EVERY = 100
QUALIA_ARCHIVE_PAGE_SIZE = 12  # what Substack's own web client asks for
QUALIA_PINTEREST_PAGE_SIZE = 25
QUALIA_SUBSTACK_URL = "https://substack.com"
QUALIA_SUBSTACK_PUBLICATION_URL = None  # template with "{subdomain}"; None: subdomain or custom domain
QUALIA_PINTEREST_URL = "https://www.pinterest.com"
