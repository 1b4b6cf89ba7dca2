"""A local stand-in for Substack and Pinterest, serving the shapes of docs/sources.md for one person.

Paths are prefixed so one host can play every site: ``/substack`` is substack.com,
``/pub/{subdomain}`` a publication, ``/pinterest`` pinterest.com, ``/substackcdn`` and ``/pinimg``
the image CDNs. Tests can make it misbehave (``fail_next``, ``corrupt_next``, ``latency``) and read
what was asked of it (``requests``).
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import json
import logging
import re
import threading
import time
import zlib
from dataclasses import dataclass
from email.utils import format_datetime
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from samplesite.content import (
    ARCHIVE_MAX_LIMIT,
    PINTEREST_PAGE_SIZE,
    PINTEREST_ROOT,
    PINVIDEO,
    PUBLICATION_ROOT,
    SUBSTACK_ROOT,
    Board,
    Pin,
    Post,
    Publication,
    World,
)

log = logging.getLogger(__name__)

END = "-end-"
# Pinterest also ends some feeds with a bookmark of this prefix (base64 of "cbNone;").
NONE_BOOKMARK = "Y2JOb25lOw=="


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-answer (a crawl killed on purpose) is no news: no traceback on stderr.
        log.debug("connection from %s ended early", client_address, exc_info=True)


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# How the site can misbehave (``SampleSite.fault_next``), each as the real sites and networks do:
FAULT_KINDS = {
    "status": "answer with an HTTP error status (429 with Retry-After, 5xx, 403, 404...)",
    "corrupt": "200 with garbled bytes: broken JSON, or a picture that is not one",
    "truncate": "200 with the first half of the answer, its length consistent (truncated JSON or picture)",
    "cut": "announce the whole answer, send half of it, hang up (the connection drops mid-answer)",
    "drop": "hang up without answering",
    "html": "200 with an HTML error page where JSON was expected",
    "oversize": "announce a picture of 64 MiB (over any sane download limit) and hang up",
    "bomb": "a PNG of 20,000 x 20,000 pixels in a few hundred kilobytes (a decompression bomb)",
}
OVERSIZE_BYTES = 64 * 1024 * 1024
ERROR_PAGE = (b"<!DOCTYPE html><html><head><title>Oops</title></head><body><h1>Something went wrong</h1>"
              b"<p>We could not load this page. Please try again later.</p></body></html>")


@dataclass
class _Fault:
    pattern: str
    status: int
    remaining: int
    kind: str = "status"
    retry_after: str | None = None


_BOMB: list[bytes] = []


def bomb_png() -> bytes:
    """A 20,000 x 20,000 one-bit PNG: small on the wire, 400 M pixels once decoded (made once, lazily)."""
    if not _BOMB:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("1", (20_000, 20_000)).save(buffer, format="PNG", optimize=True)
        _BOMB.append(buffer.getvalue())
    return _BOMB[0]


def _page_bookmark(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _page_offset(bookmarks: Any) -> int:
    if not bookmarks:
        return 0
    if not isinstance(bookmarks, list) or not isinstance(bookmarks[0], str):
        raise HTTPError(400, "bookmarks must be a list of strings")
    try:
        offset = json.loads(base64.urlsafe_b64decode(bookmarks[0].encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as e:
        raise HTTPError(400, f"bad bookmark: {e}") from e
    if not isinstance(offset, int) or offset < 0:
        raise HTTPError(400, "bad bookmark")
    return offset


class SampleSite:
    """The sample person's Substack and Pinterest on 127.0.0.1; a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, scale: int = 1) -> None:
        self.host = host
        self.port = port
        self.world = World(scale)
        self.substack_handle = self.world.person.handle
        self.pinterest_username = self.world.pinterest_username
        self.queries = ["quiet morning cup", "tidewater", "ember hour house", "paper moon bicycle", "static chair",
                        "greenhouse window"]
        self.latency = 0.0
        self.requests: list[str] = []
        self.timeline: list[tuple[float, str]] = []  # (time.monotonic(), path) of each request
        self.disallowed: list[str] = []  # robots.txt Disallow lines
        self.user_agents: set[str] = set()
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._image_cache: dict[str, bytes] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> SampleSite:
        site = self

        class Handler(_Handler):
            pass

        Handler.site = site
        self._server = _QuietServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="samplesite", daemon=True)
        self._thread.start()
        log.info("sample site serving at %s", self.base_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SampleSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what clients configure ------------------------------------------------------------

    @property
    def substack_url(self) -> str:
        return self.base_url + SUBSTACK_ROOT

    @property
    def publication_url_template(self) -> str:
        return self.base_url + PUBLICATION_ROOT

    @property
    def pinterest_url(self) -> str:
        return self.base_url + PINTEREST_ROOT

    def env(self) -> dict[str, str]:
        return {
            "QUALIA_SUBSTACK_URL": self.substack_url,
            "QUALIA_SUBSTACK_PUBLICATION_URL": self.publication_url_template,
            "QUALIA_PINTEREST_URL": self.pinterest_url,
        }

    def expected_counts(self, depth: int = 2, sources: tuple[str, ...] = ("substack", "pinterest")) -> dict[str, Any]:
        return self.world.expected_counts(depth, sources)

    @property
    def facts(self) -> dict[str, Any]:
        w = self.world
        far = w.publications[2007]
        return {
            "degree3_publication_id": far.id,
            "degree3_subdomain": far.subdomain,
            "degree3_post_ids": [p.id for p in far.posts],
            "degree3_pin_ids": list(w.degree3_pin_ids),
            "shared_picture_urls": [self.base_url + p for p in w.shared_picture_paths],
            "paid_post_id": w.paid_post.id,
            "carousel_pin_id": w.carousel_pin_id,
            "carousel_image_urls": [self.base_url + s.url for s in w.pins[w.carousel_pin_id].carousel],
            "video_pin_id": w.video_pin_id,
            "video_url": self.base_url + (w.pins[w.video_pin_id].video_url or ""),
            "story_pin_id": w.story_pin_id,
            "story_image_urls": [self.base_url + p.url for p in w.pins[w.story_pin_id].story],
            "custom_domain_publication_ids": [p.id for p in w.publications.values() if p.custom_domain],
            "paged_board_id": next(iter(w.boards)),
        }

    # -- misbehaviour, for tests -----------------------------------------------------------

    def fail_next(self, path_substring: str, status: int = 500, times: int = 1, retry_after: int | None = None) -> None:
        """Answer the next ``times`` requests whose path contains ``path_substring`` with ``status``
        (and a ``Retry-After`` of that many seconds; a 429 says 0 unless told)."""
        after = str(retry_after) if retry_after is not None else ("0" if status == 429 else None)
        self.fault_next(path_substring, "status", times, status=status, retry_after=after)

    def corrupt_next(self, path_substring: str, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with 200 and broken bytes (bad JSON, bad image)."""
        self.fault_next(path_substring, "corrupt", times)

    def fault_next(self, path_substring: str, kind: str, times: int = 1, status: int = 200,
                   retry_after: str | None = None) -> None:
        """Misbehave on the next ``times`` requests whose path contains ``path_substring``, in one of
        the ways of ``FAULT_KINDS``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        with self._lock:
            self._faults.append(_Fault(path_substring, status, times, kind, retry_after))

    def disallow(self, path_prefix: str) -> None:
        """Make robots.txt disallow ``path_prefix`` to every user agent."""
        with self._lock:
            self.disallowed.append(path_prefix)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self.disallowed.clear()

    def _take_fault(self, path: str, user_agent: str | None = None) -> _Fault | None:
        with self._lock:
            self.requests.append(path)
            self.timeline.append((time.monotonic(), path))
            self.user_agents.add(user_agent or "")
            for fault in self._faults:
                if fault.remaining > 0 and fault.pattern in path:
                    fault.remaining -= 1
                    return fault
        return None

    def picture_bytes(self, path: str) -> bytes | None:
        pic = self.world.pictures.get(path)
        if pic is None:
            return None
        with self._lock:
            data = self._image_cache.get(path)
        if data is None:
            data = pic.render()
            with self._lock:
                self._image_cache[path] = data
        return data

    # -- rendering ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base_url + path

    def pub_url(self, pub: Publication) -> str:
        return self.publication_url_template.replace("{subdomain}", pub.subdomain)

    def pub_json(self, pub: Publication) -> dict[str, Any]:
        return {"id": pub.id, "name": pub.name, "subdomain": pub.subdomain, "custom_domain": pub.custom_domain,
                "custom_domain_optional": False, "hero_text": f"{pub.name}, a newsletter", "logo_url": None,
                "author_id": None, "language": "en"}

    def post_json(self, post: Post, full: bool) -> dict[str, Any]:
        pub = self.world.publications[post.publication_id]
        data = {
            "id": post.id, "publication_id": pub.id, "title": post.title, "subtitle": post.subtitle,
            "slug": post.slug, "post_date": post.post_date, "canonical_url": f"{self.pub_url(pub)}/p/{post.slug}",
            "cover_image": self.url(post.cover_url), "audience": post.audience, "type": "newsletter",
            "description": post.subtitle, "wordcount": sum(len(p.split()) for p in post.paragraphs),
            "reactions": {"\u2764": len(post.slug) % 17},
        }
        if full:
            data["body_html"] = self.body_html(post)
            if post.paid:
                data["truncated_body_text"] = post.paragraphs[0]
            if post.id % 4 == 1:
                # As real detail answers do now and then: less than the listing said, ids as strings.
                data.update(cover_image=None, publication_id=str(pub.id))
                del data["canonical_url"]
        return data

    def body_html(self, post: Post) -> str:
        parts = []
        paragraphs = post.paragraphs[:1] if post.paid else post.paragraphs
        figures = [] if post.paid else post.figures
        for i in range(max(len(paragraphs), len(figures))):
            if i < len(paragraphs):
                parts.append(f"<p>{html.escape(paragraphs[i])}</p>")
            if i < len(figures):
                f = figures[i]
                src = html.escape(self.url(f.url))
                parts.append(
                    '<div class="captioned-image-container"><figure>'
                    f'<a class="image-link image2" href="{src}"><img src="{src}" alt="{html.escape(f.alt)}"'
                    ' width="96" height="96" loading="lazy"></a>'
                    f'<figcaption class="image-caption">{html.escape(f.caption)}</figcaption></figure></div>'
                )
        if post.paid:
            parts.append('<div class="paywall-jump" data-component-name="PaywallToDOM"></div>')
        return "\n".join(parts)

    def pin_json(self, pin: Pin, detailed: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": pin.id, "type": "pin", "title": pin.title, "grid_title": pin.title or pin.description[:40],
            "description": pin.description, "link": pin.link, "created_at": pin.created_at,
            "dominant_color": "#7a6a58", "alt_text": pin.alt_text, "auto_alt_text": None,
            "images": {
                "236x": {"url": self.url(pin.small_url), "width": 64, "height": 64},
                "orig": {"url": self.url(pin.orig_url), "width": 96, "height": 96},
            },
            "board": {"id": pin.board_id, "name": pin.board_name, "url": pin.board_url, "type": "board"},
            "pinner": {"id": str(zlib.crc32(pin.pinner.encode())), "username": pin.pinner,
                       "full_name": pin.pinner.replace("_", " ").title()},
            "is_video": pin.video_url is not None,
            "videos": None,
            "carousel_data": None,
            "story_pin_data_id": None,
        }
        if pin.video_url:
            data["videos"] = {"video_list": {"V_720P": {"url": self.url(pin.video_url), "width": 720, "height": 720,
                                                        "duration": 12000, "thumbnail": self.url(pin.orig_url)}}}
        if pin.carousel:
            data["carousel_data"] = {"id": f"c{pin.id}", "carousel_slots": [
                {"id": f"{pin.id}-{k}", "title": s.title, "details": s.details,
                 "images": {"orig": {"url": self.url(s.url), "width": 96, "height": 96}}}
                for k, s in enumerate(pin.carousel)]}
        if detailed:
            data["closeup_unified_description"] = pin.closeup
            # Real detail answers carry less than the listing that led to them: no board or pinner
            # objects, or a board reduced to its id (a number here, a string elsewhere), no date.
            if int(pin.id) % 3 == 0:
                data["board"] = None
                del data["pinner"]
            elif int(pin.id) % 3 == 1:
                data["board"] = {"id": int(pin.board_id)}
                data["created_at"] = None
            if pin.story:
                data["story_pin_data_id"] = f"s{pin.id}"
                data["story_pin_data"] = {"page_count": len(pin.story), "pages": [
                    {"blocks": [
                        {"block_type": 2, "type": "story_pin_image_block",
                         "image": {"images": {"originals": {"url": self.url(p.url), "width": 96, "height": 96}}}},
                        {"block_type": 1, "type": "story_pin_paragraph_block", "text": p.text},
                    ]} for p in pin.story]}
        return data

    def board_json(self, board: Board, detailed: bool) -> dict[str, Any]:
        # ids are strings in most answers and numbers in some
        data = {"id": int(board.id) if int(board.id) % 2 else board.id, "name": board.name,
                "url": f"/{board.owner}/{board.slug}/",
                "description": board.description, "pin_count": len(board.pin_ids), "privacy": "public",
                "type": "board", "owner": {"id": "4242", "username": board.owner, "full_name": self.world.person.name}}
        if detailed:
            data.update({"created_at": board.created_at, "section_count": 0, "follower_count": 3})
        return data


class _Handler(BaseHTTPRequestHandler):
    site: SampleSite
    protocol_version = "HTTP/1.1"
    server_version = "qualia-samplesite/1"

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        site = self.site
        if site.latency:
            time.sleep(site.latency)
        fault = site._take_fault(self.path, self.headers.get("User-Agent"))
        kind = fault.kind if fault else None
        if kind == "drop":
            self.close_connection = True  # hang up: the client never gets an answer
            return
        try:
            if kind == "status":
                raise HTTPError(fault.status, f"injected failure {fault.status}")
            status, ctype, body = self.route()
        except HTTPError as e:
            status, ctype, body = self.error(e)
        if kind == "corrupt":
            body = b'{"broken": [1, 2' if "json" in ctype else b"\xff\xd8\xff\xe0 not really a picture" * 3
        elif kind == "truncate":
            body = body[: len(body) // 2]
        elif kind == "html":
            status, ctype, body = 200, "text/html; charset=utf-8", ERROR_PAGE
        elif kind == "bomb":
            status, ctype, body = 200, "image/png", bomb_png()
        announced = OVERSIZE_BYTES if kind == "oversize" else len(body)
        if kind == "cut":  # the length says the whole answer is coming
            body = body[: len(body) // 2]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(announced))
        if fault and fault.retry_after is not None:
            self.send_header("Retry-After", fault.retry_after)
        self.end_headers()
        self.wfile.write(body[:65536] if kind == "oversize" else body)
        if kind in ("cut", "oversize"):
            self.wfile.flush()
            self.close_connection = True

    def error(self, e: HTTPError) -> tuple[int, str, bytes]:
        if self.path.startswith(PINTEREST_ROOT + "/resource/"):
            payload: Any = {"resource_response": {"status": "failure", "code": 1, "message": e.message,
                                                  "http_status": e.status,
                                                  "error": {"message": e.message, "http_status": e.status}}}
        else:
            payload = {"error": e.message}
        return e.status, "application/json; charset=utf-8", json.dumps(payload).encode()

    # -- routing ---------------------------------------------------------------------------

    def route(self) -> tuple[int, str, bytes]:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if path == "/robots.txt":
            rules = "".join(f"Disallow: {p}\n" for p in self.site.disallowed) or "Allow: /\n"
            return 200, "text/plain", f"User-agent: *\n{rules}".encode()
        if path.startswith(PINVIDEO + "/"):
            return 200, "video/mp4", b"\x00\x00\x00\x18ftypmp42 sample video"
        data = self.site.picture_bytes(path)
        if data is not None:
            pic = self.site.world.pictures[path]
            return 200, pic.content_type, data
        if m := re.fullmatch(re.escape(SUBSTACK_ROOT) + r"/api/v1/user/([^/]+)/public_profile", path):
            return self.json(self.public_profile(m[1]))
        if m := re.fullmatch(r"/pub/([a-z0-9-]+)(/.*)", path):
            return self.publication(m[1], m[2], query)
        if m := re.fullmatch(re.escape(PINTEREST_ROOT) + r"/resource/(\w+)Resource/get/?", path):
            return self.json(self.pinterest(m[1], query))
        if m := re.fullmatch(re.escape(PINTEREST_ROOT) + r"/([\w.-]+)/(feed|[\w-]+)\.rss", path):
            return 200, "application/rss+xml; charset=utf-8", self.pinterest_rss(m[1], m[2])
        raise HTTPError(404, f"no such page: {path}")

    def json(self, payload: Any) -> tuple[int, str, bytes]:
        return 200, "application/json; charset=utf-8", json.dumps(payload).encode()

    # -- substack ----------------------------------------------------------------------------

    def public_profile(self, handle: str) -> dict[str, Any]:
        site, person = self.site, self.site.world.person
        if handle != person.handle:
            raise HTTPError(404, "User not found")
        pubs = site.world.publications
        return {
            "id": person.id, "name": person.name, "handle": person.handle, "bio": person.bio,
            "photo_url": site.url(person.photo_url), "profile_set_up_at": "2021-03-02T10:00:00.000Z",
            "subscriptions": [{"publication": site.pub_json(pubs[p]), "membership_state": "subscribed"}
                              for p in person.subscriptions],
            "publicationUsers": [{"id": 9000 + p, "publication": site.pub_json(pubs[p]), "role": "admin",
                                  "public": True} for p in person.writes],
            "primaryPublication": site.pub_json(pubs[person.writes[0]]),
            "userLinks": [],
        }

    def publication(self, subdomain: str, rest: str, query: dict[str, str]) -> tuple[int, str, bytes]:
        site = self.site
        pub = site.world.publication_by_subdomain(subdomain)
        if pub is None:
            raise HTTPError(404, "Publication not found")
        if rest == "/api/v1/archive":
            try:
                offset, limit = int(query.get("offset", 0)), int(query.get("limit", 12))
            except ValueError as e:
                raise HTTPError(400, "offset and limit must be integers") from e
            if offset < 0 or not 1 <= limit <= ARCHIVE_MAX_LIMIT or query.get("sort", "new") != "new":
                raise HTTPError(400, f"bad archive query (limit 1-{ARCHIVE_MAX_LIMIT}, sort=new)")
            return self.json([site.post_json(p, full=False) for p in pub.posts[offset:offset + limit]])
        if m := re.fullmatch(r"/api/v1/posts/([\w-]+)", rest):
            post = next((p for p in pub.posts if p.slug == m[1]), None)
            if post is None:
                raise HTTPError(404, "Post not found")
            return self.json(site.post_json(post, full=True))
        if m := re.fullmatch(r"/api/v1/recommendations/from/(\d+)", rest):
            source = site.world.publications.get(int(m[1]))
            if source is None:
                raise HTTPError(404, "Publication not found")
            return self.json([{"id": 5000 + r, "recommending_publication_id": source.id,
                               "recommendingPublication": site.pub_json(source),
                               "recommendedPublication": site.pub_json(site.world.publications[r])}
                              for r in source.recommends])
        if rest == "/api/v1/publication/users/ranked":
            return self.json([{"id": 7000 + i, "name": name, "handle": handle, "photo_url": None, "role": "admin"}
                              for i, (handle, name) in enumerate(pub.authors)])
        if rest == "/feed":
            return 200, "application/rss+xml; charset=utf-8", self.substack_rss(pub)
        if m := re.fullmatch(r"/p/([\w-]+)", rest):
            post = next((p for p in pub.posts if p.slug == m[1]), None)
            if post is None:
                raise HTTPError(404, "Post not found")
            page = (f"<!doctype html><html><head><title>{html.escape(post.title)}</title></head><body>"
                    f"<h1>{html.escape(post.title)}</h1><h3>{html.escape(post.subtitle)}</h3>"
                    f"{site.body_html(post)}</body></html>")
            return 200, "text/html; charset=utf-8", page.encode()
        raise HTTPError(404, f"no such page: {rest}")

    def substack_rss(self, pub: Publication) -> bytes:
        site = self.site
        items = []
        for post in pub.posts[:20]:
            link = f"{site.pub_url(pub)}/p/{post.slug}"
            date = format_datetime(datetime.fromisoformat(post.post_date.replace("Z", "+00:00")))
            body = "" if post.paid else f"<content:encoded><![CDATA[{site.body_html(post)}]]></content:encoded>"
            items.append(f"<item><title>{html.escape(post.title)}</title><link>{link}</link>"
                         f"<guid isPermaLink=\"false\">{post.id}</guid><pubDate>{date}</pubDate>"
                         f"<description>{html.escape(post.subtitle)}</description>"
                         f"<enclosure url=\"{site.url(post.cover_url)}\" type=\"image/jpeg\" length=\"0\"/>{body}</item>")
        return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
                f'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
                f"<title>{html.escape(pub.name)}</title><link>{site.pub_url(pub)}</link>"
                f"<description>{html.escape(pub.name)}</description>{''.join(items)}</channel></rss>").encode()

    # -- pinterest ---------------------------------------------------------------------------

    def pinterest(self, resource: str, query: dict[str, str]) -> dict[str, Any]:
        if self.headers.get("X-Requested-With") != "XMLHttpRequest":
            raise HTTPError(403, "Invalid Resource Request")
        try:
            request = json.loads(query.get("data", ""))
            options = request["options"]
            if not isinstance(options, dict):
                raise TypeError("options must be an object")
        except (ValueError, KeyError, TypeError) as e:
            raise HTTPError(400, f"Invalid Resource Request: bad data parameter ({e})") from e
        site, world = self.site, self.site.world
        page_size = options.get("page_size", PINTEREST_PAGE_SIZE)
        if not isinstance(page_size, int) or not 1 <= page_size <= 250:
            raise HTTPError(400, "page_size must be 1-250")

        def need(name: str) -> str:
            value = options.get(name)
            if not isinstance(value, str) or not value:
                raise HTTPError(400, f"Invalid Resource Request: option {name!r} is required")
            return value

        def found(table: dict[str, Any], option: str, what: str) -> Any:
            row = table.get(need(option))
            if row is None:
                raise HTTPError(404, f"{what} not found")
            return row

        def paged(rows: list[Any]) -> tuple[list[Any], str]:
            offset = _page_offset(options.get("bookmarks"))
            end = offset + page_size
            return rows[offset:end], (_page_bookmark(end) if end < len(rows) else END)

        bookmark: str | None = None
        if resource == "Boards":
            boards = world.user_boards(need("username"))
            rows, bookmark = paged(boards)
            data: Any = [site.board_json(b, detailed=False) for b in rows]
        elif resource == "Board":
            username, slug = need("username"), need("slug")
            board = next((b for b in world.user_boards(username) if b.slug == slug), None)
            if board is None:
                raise HTTPError(404, "Board not found")
            data = site.board_json(board, detailed=True)
        elif resource == "BoardFeed":
            board = found(world.boards, "board_id", "Board")
            rows, bookmark = paged([world.pins[i] for i in board.pin_ids])
            data = [site.pin_json(p, detailed=False) for p in rows]
        elif resource == "UserPins":
            rows, bookmark = paged(world.user_pins(need("username")))
            data = [site.pin_json(p, detailed=False) for p in rows]
        elif resource == "Pin":
            data = site.pin_json(found(world.pins, "id", "Pin"), detailed=True)
        elif resource == "RelatedPinFeed":
            pin = found(world.pins, "pin", "Pin")
            data = [site.pin_json(world.pins[i], detailed=False) for i in pin.related]  # one page, no bookmarks
        elif resource == "BoardContentRecommendation":
            board = found(world.boards, "id", "Board")
            data = [site.pin_json(world.pins[i], detailed=False) for i in board.more_ideas]
            bookmark = NONE_BOOKMARK
        else:
            raise HTTPError(404, f"Invalid Resource Request: unknown resource {resource}Resource")
        echoed = {k: v for k, v in options.items() if k != "bookmarks"}
        if bookmark:
            echoed["bookmarks"] = [bookmark]
        response: dict[str, Any] = {"status": "success", "code": 0, "message": "ok", "http_status": 200,
                                    "data": data}
        if bookmark:
            response["bookmark"] = bookmark
        return {"resource_response": response, "resource": {"name": f"{resource}Resource", "options": echoed},
                "client_context": {"is_authenticated": False}, "request_identifier": str(len(site.requests))}

    def pinterest_rss(self, username: str, feed: str) -> bytes:
        site, world = self.site, self.site.world
        if feed == "feed":
            pins = world.user_pins(username)
        else:
            board = next((b for b in world.user_boards(username) if b.slug == feed), None)
            if board is None:
                raise HTTPError(404, "Board not found")
            pins = [world.pins[i] for i in board.pin_ids]
        if not pins:
            raise HTTPError(404, "User not found")
        items = []
        for p in pins[:25]:
            link = f"{site.pinterest_url}/pin/{p.id}/"
            description = f'<a href="{link}"><img src="{site.url(p.small_url)}"></a>{p.description}'
            items.append(f"<item><title>{html.escape(p.title or p.description)}</title><link>{link}</link>"
                         f"<guid>{link}</guid><description>{html.escape(description)}</description>"
                         f"<pubDate>{p.created_at}</pubDate></item>")
        return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{username}</title>'
                f"<link>{site.pinterest_url}/{username}/</link><description>pins</description>{''.join(items)}"
                "</channel></rss>").encode()
