"""Pinterest: a person's boards and pins through the web app's JSON resources, and (one hop further)
"more like this" pins and board recommendations. Endpoint shapes and paging: docs/sources.md."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from parsel import Selector
from scrapy.http import Request, Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawler.items import Done, ImageRef, Record
from crawler.spiders import CorpusSpider
from crawler.urls import api_url, is_web_url
from qualia.text import join_lines

# The person's own listings: when the resource API refuses them, their RSS feeds are read instead.
RSS_FALLBACK = ("Boards", "UserPins", "BoardFeed")
HEADERS = {"Accept": "application/json, text/javascript, */*, q=0.01", "X-Requested-With": "XMLHttpRequest"}
PIN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
BOARD_URL = re.compile(r"^/([^/]+)/([^/]+)/?$")


def next_bookmark(payload: Any) -> str | None:
    """The bookmark to ask for the next page with, or None when the feed has ended.

    The next call repeats the options plus ``bookmarks: [value]`` from ``resource.options.bookmarks``;
    the feed has ended when that is missing, empty, ``["-end-"]`` or starts with ``Y2JOb25lO``.
    """
    resource = payload.get("resource") if isinstance(payload, dict) else None
    options = resource.get("options") if isinstance(resource, dict) else None
    marks = options.get("bookmarks") if isinstance(options, dict) else None
    if not isinstance(marks, list) or not marks:
        return None
    mark = marks[0]
    if not isinstance(mark, str) or not mark or mark == "-end-" or mark.startswith("Y2JOb25lO"):
        return None
    return mark


def best_image_url(images: Any) -> str | None:
    """The original from an ``images`` map ({"orig": {"url"}, "236x": ...}), else its widest size."""
    if not isinstance(images, dict):
        return None
    for key in ("orig", "originals"):
        entry = images.get(key)
        if isinstance(entry, dict) and is_web_url(entry.get("url")):
            return entry["url"]
    sized = [v for v in images.values() if isinstance(v, dict) and is_web_url(v.get("url"))]
    sized.sort(key=lambda v: v.get("width") if isinstance(v.get("width"), int) else 0, reverse=True)
    return sized[0]["url"] if sized else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The dict entries of a JSON list; anything else (a site's schema drift) reads as empty."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _id(value: Any) -> str | None:
    """An id as a string: the site gives ids as numbers in one answer and strings in another."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value)


def iso_date(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError):
        return value


class PinterestSpider(CorpusSpider):
    name = "pinterest"
    source = "pinterest"

    def configure(self, settings: Any) -> None:
        self.root = settings.get("QUALIA_PINTEREST_URL") or "https://www.pinterest.com"
        self.page_size = settings.getint("QUALIA_PINTEREST_PAGE_SIZE", 25)

    def resource(self, name: str, options: dict[str, Any], source_url: str, callback: Any,
                 meta: dict[str, Any]) -> Request:
        data = json.dumps({"options": options, "context": {}}, separators=(",", ":"))
        url = api_url(self.root, f"resource/{name}Resource/get/", {"source_url": source_url, "data": data})
        request = self.get(url, callback, headers=HEADERS,
                           meta={**meta, "resource": name, "options": options, "source_url": source_url})
        if name in RSS_FALLBACK:
            request.errback = self.refused
        return request

    # -- when the resource API refuses: RSS ---------------------------------------------------

    def refused(self, failure: Failure) -> Iterator[Request]:
        """The errback of the person's own listings: the loss is logged and counted as any other, and
        when the API refused (403, 404, 401, 410) the same pins are asked of the RSS feeds."""
        yield from self.failed(failure) or []
        if failure.check(HttpError) and failure.value.response.status in (401, 403, 404, 410):
            yield from self.rss_instead(failure.request.meta)

    def rss_instead(self, meta: dict[str, Any]) -> Iterator[Request]:
        """``/{user}/feed.rss`` for the person's pins (and for boards, when they cannot be listed);
        ``/{user}/{board}.rss`` for one board's pins. About 25 recent pins each."""
        resource, node = meta["resource"], meta["node"]
        options = meta.get("options") or {}
        board = BOARD_URL.match(meta.get("source_url") or "")
        if resource == "BoardFeed" and board:
            url, relation, added = api_url(self.root, f"{quote(board[1])}/{quote(board[2])}.rss"), "contains", 0
        elif resource in ("UserPins", "Boards") and isinstance(options.get("username"), str):
            url, relation, added = api_url(self.root, f"{quote(options['username'])}/feed.rss"), "pinned", 1
        else:
            return
        self.logger.warning("the resource API refused %s; reading %s instead", resource, url)
        yield self.get(url, self.parse_rss, meta={"degree": meta["degree"], "node": node, "relation": relation,
                                                  "added": added})

    def parse_rss(self, response: Response) -> Iterator[Record | Request]:
        """Pins from an RSS feed: the picture is the ``<img>`` in the escaped ``<description>``, asked
        for a size larger than the thumbnail where the CDN has it (else the thumbnail)."""
        try:
            items = Selector(text=response.text, type="xml").xpath("//item")
        except (ValueError, AttributeError) as e:
            self.error(response, f"not an RSS feed ({e})")
            return
        self.crawler.stats.inc_value("qualia/pages_ok")
        src, degree = response.meta["node"], response.meta["degree"] + response.meta["added"]
        for item in items:
            link = item.xpath("link/text()").get() or item.xpath("guid/text()").get() or ""
            found = re.search(r"/pin/([A-Za-z0-9_-]{1,64})/?", link)
            body = Selector(text=f"<div>{item.xpath('description/text()').get() or ''}</div>")
            thumb = body.css("img::attr(src)").get()
            if found is None or not is_web_url(thumb):
                continue
            pin_id = found[1]
            large = thumb.replace("/236x/", "/736x/") if "/236x/" in thumb else thumb
            record = Record(
                f"pinterest:pin:{pin_id}", "pinterest", "pin", degree, via=(src, response.meta["relation"]),
                title=join_lines(item.xpath("title/text()").get()),
                text=join_lines(" ".join(body.xpath("//div/text()").getall())),
                url=api_url(self.root, f"pin/{pin_id}/"), published_at=iso_date(item.xpath("pubDate/text()").get()),
                data={"id": pin_id, "from_rss": True}, images=[ImageRef(large, "pin")],
            )
            yield record
            yield self.get(large, self.parse_picture, meta={"qualia_image": large, "qualia_smaller": thumb})

    def resource_data(self, response: Response, expected: type) -> tuple[Any, Any]:
        """(resource_response.data, whole payload), or (None, None) if the answer is unusable."""
        payload = self.load_json(response, dict)
        if payload is None:
            return None, None
        inner = payload.get("resource_response")
        data = inner.get("data") if isinstance(inner, dict) else None
        if not isinstance(data, expected):
            self.error(response, f"no {expected.__name__} in resource_response.data")
            return None, None
        return data, payload

    def next_page(self, response: Response, payload: Any, listed: list[str]) -> Iterator[Request | Done]:
        """The feed's next page (``listed``: the ids this page gave), or the mark that it ended."""
        mark = next_bookmark(payload)
        options = response.meta["options"]
        if mark is None or [mark] == options.get("bookmarks"):
            yield from self.ended(response)
            return
        yield self.resource(response.meta["resource"], {**options, "bookmarks": [mark]},
                            response.meta["source_url"], response.request.callback,
                            {k: response.meta[k] for k in ("degree", "node")} | self.next_meta(response, listed))

    async def start(self) -> AsyncIterator[Record | Request]:
        for username in self.names:
            node = f"pinterest:user:{username}"
            yield Record(node, "pinterest", "user", 0, title=username, url=api_url(self.root, f"{quote(username)}/"),
                         data={"username": username})
            meta = {"degree": 0, "node": node}
            yield self.resource("Boards", {"username": username, "page_size": self.page_size,
                                           "sort": "last_pinned_to", "field_set_key": "profile_grid_item"},
                                f"/{username}/boards/", self.parse_boards, meta | self.once("boards", node, paged=True))
            yield self.resource("UserPins", {"username": username, "page_size": self.page_size,
                                             "field_set_key": "grid_item"},
                                f"/{username}/_created/", self.parse_user_pins, meta | self.once("pins", node, paged=True))

    # -- boards -----------------------------------------------------------------------------

    def board_record(self, board: dict[str, Any], degree: int, via: tuple[str, str] | None,
                     complete: bool) -> Record | None:
        board_id = _id(board.get("id"))
        if board_id is None or not PIN_ID.fullmatch(board_id):
            return None
        owner = board.get("owner") if isinstance(board.get("owner"), dict) else {}
        path = board.get("url") if isinstance(board.get("url"), str) else None
        return Record(
            f"pinterest:board:{board_id}", "pinterest", "board", degree, via=via, title=board.get("name"),
            text=join_lines(board.get("description")), url=api_url(self.root, path) if path else None,
            data={"id": board_id, "name": board.get("name"), "url": path, "pin_count": board.get("pin_count"),
                  "owner": owner.get("username")},
            complete=complete,
        )

    def parse_boards(self, response: Response) -> Iterator[Record | Request]:
        boards, payload = self.resource_data(response, list)
        if boards is None:
            if response.meta.get("qualia_unreadable"):  # HTML where JSON should be: a refusal too
                yield from self.rss_instead(response.meta)
            return
        user, degree = response.meta["node"], response.meta["degree"] + 1
        listed = []
        for board in boards:
            record = self.board_record(board, degree, (user, "owns"), False) if isinstance(board, dict) else None
            if record is None:
                continue
            listed.append(record.id)
            yield record
            if not self.first_expansion(record.id, degree):
                continue
            board_id = record.data["id"]
            meta = {"degree": degree, "node": record.id}
            match = BOARD_URL.match(record.data["url"] or "")
            if match:
                yield self.resource("Board", {"username": match[1], "slug": match[2], "field_set_key": "detailed"},
                                    record.data["url"], self.parse_board, meta | {"qualia_done": f"detail:{record.id}"})
            yield self.resource("BoardFeed", {"board_id": board_id, "page_size": self.page_size,
                                              "field_set_key": "react_grid_pin"},
                                record.data["url"] or "/", self.parse_board_feed,
                                meta | self.once("feed", record.id, paged=True))
            if degree < self.depth:
                yield self.resource("BoardContentRecommendation", {"id": board_id, "type": "board"},
                                    record.data["url"] or "/", self.parse_more_ideas, meta | self.once("ideas", record.id))
        yield from self.next_page(response, payload, listed)

    def parse_board(self, response: Response) -> Iterator[Record]:
        board, _ = self.resource_data(response, dict)
        record = self.board_record(board, response.meta["degree"], None, True) if board else None
        if record is not None:
            yield record

    # -- pins -------------------------------------------------------------------------------

    def pin_record(self, pin: dict[str, Any], degree: int, via: tuple[str, str] | None, complete: bool) -> Record | None:
        pin_id = _id(pin.get("id")) or ""
        if not PIN_ID.fullmatch(pin_id):
            return None
        images: dict[str, ImageRef] = {}

        def add(url: str | None, role: str, alt: Any = None, caption: Any = None, position: int = 0) -> None:
            if url:
                images[url] = ImageRef(url, role, join_lines(alt), join_lines(caption), position)

        add(best_image_url(pin.get("images")), "pin", pin.get("alt_text") or pin.get("auto_alt_text"))
        carousel = _dict(pin.get("carousel_data"))
        for k, slot in enumerate(_dicts(carousel.get("carousel_slots"))):
            add(best_image_url(slot.get("images")), "carousel", slot.get("title"), slot.get("details"), k)
        story = _dict(pin.get("story_pin_data"))
        for k, page in enumerate(_dicts(story.get("pages"))):
            blocks = _dicts(page.get("blocks"))
            words = join_lines(*(b.get("text") for b in blocks))
            for block in blocks:
                add(best_image_url(_dict(block.get("image")).get("images")), "story", None, words, k)
        # A detail answer may lack these (or give them as bare ids): None, so the merge keeps what the
        # listing said (crawler.pipelines.merge_data).
        board = _dict(pin.get("board"))
        pinner = _dict(pin.get("pinner"))
        # A video pin keeps its still images; the video itself is never fetched.
        is_video = bool(pin.get("videos") or pin.get("is_video")) if ("videos" in pin or "is_video" in pin) else None
        return Record(
            f"pinterest:pin:{pin_id}", "pinterest", "pin", degree, via=via,
            title=join_lines(pin.get("title") or pin.get("grid_title")),
            text=join_lines(pin.get("description"), pin.get("closeup_unified_description")),
            url=api_url(self.root, f"pin/{pin_id}/"), published_at=iso_date(pin.get("created_at")),
            data={"id": pin_id, "link": pin.get("link"), "pinner": pinner.get("username"),
                  "board": {k: _id(board.get(k)) if k == "id" else board.get(k) for k in ("id", "name", "url")}
                  if board else None,
                  "video": is_video, "carousel": bool(carousel) if "carousel_data" in pin else None,
                  "story": bool(story) if "story_pin_data" in pin else None},
            images=list(images.values()), complete=complete,
        )

    def pins(self, response: Response, relation: str, added: int) -> Iterator[Record | Request]:
        """Pins listed by ``response``'s node, ``added`` hops further than it."""
        pins, payload = self.resource_data(response, list)
        if pins is None:
            if response.meta.get("qualia_unreadable") and response.meta.get("resource") in RSS_FALLBACK:
                yield from self.rss_instead(response.meta)
            return
        src, degree = response.meta["node"], response.meta["degree"] + added
        listed = []
        for pin in pins:
            record = self.pin_record(pin, degree, (src, relation), False) if isinstance(pin, dict) else None
            if record is None:
                continue
            listed.append(record.id)
            yield from self.with_pictures(record)
            if not self.first_expansion(record.id, degree):
                continue
            meta = {"degree": degree, "node": record.id}
            pin_id = record.data["id"]
            if degree <= 1:  # the person's own pins are worth their detail page
                yield self.resource("Pin", {"id": pin_id, "field_set_key": "detailed"}, f"/pin/{pin_id}/",
                                    self.parse_pin, meta | {"qualia_done": f"detail:{record.id}"})
            if degree < self.depth:
                yield self.resource("RelatedPinFeed", {"pin": pin_id, "add_vase": True, "pins_only": True},
                                    f"/pin/{pin_id}/", self.parse_related, meta | self.once("related", record.id))
        yield from self.next_page(response, payload, listed)

    def parse_board_feed(self, response: Response) -> Iterator[Record | Request]:
        yield from self.pins(response, "contains", 0)

    def parse_user_pins(self, response: Response) -> Iterator[Record | Request]:
        yield from self.pins(response, "pinned", 1)

    def parse_related(self, response: Response) -> Iterator[Record | Request]:
        yield from self.pins(response, "related", 1)

    def parse_more_ideas(self, response: Response) -> Iterator[Record | Request]:
        yield from self.pins(response, "more_ideas", 1)

    def parse_pin(self, response: Response) -> Iterator[Record | Request]:
        pin, _ = self.resource_data(response, dict)
        record = self.pin_record(pin, response.meta["degree"], None, True) if pin else None
        if record is not None:
            yield from self.with_pictures(record)
