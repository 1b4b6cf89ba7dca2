"""URLs as the crawler builds and checks them; shared by spiders, pipelines and middlewares."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit


def api_url(base: str, path: str, query: dict[str, Any] | None = None) -> str:
    """``path`` appended to ``base``, keeping any path prefix the base carries.

    ``urljoin("http://h/substack", "/api/v1/x")`` would drop ``/substack``; a mirror or the sample
    site serves the API under such a prefix, so paths are appended, never resolved.
    """
    url = base.rstrip("/") + "/" + path.lstrip("/")
    return f"{url}?{urlencode(query)}" if query else url


def is_web_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
