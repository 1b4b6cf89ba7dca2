"""What the parsers of site answers and of data exports share: ids as the sites give them, and the
text and figures of a Substack post body (the API's ``body_html`` and an export's post file alike)."""

from __future__ import annotations

import json
from typing import Any

from parsel import Selector

from crawler.urls import is_web_url
from qualia.text import join_lines


def numeric_id(value: Any) -> int | None:
    """A numeric id, given as a number or as a string of digits (answers differ); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        return int(value)
    return None


def _data_attrs(img: Any) -> dict[str, Any]:
    """The clean ``{src, alt, title}`` Substack keeps as JSON in an ``<img>``'s ``data-attrs``, or {}."""
    try:
        attrs = json.loads(img.attrib.get("data-attrs") or "{}")
    except ValueError:
        return {}
    return attrs if isinstance(attrs, dict) else {}


def read_body(body_html: str) -> tuple[str | None, list[tuple[str, str | None, str | None, str | None]]]:
    """Plain text of a post body, and its images as (src, alt, figcaption, the paragraphs just before
    and after the figure). Used for the API's ``body_html`` and for a writer's export alike; the
    original picture in ``data-attrs`` wins over the resized ``src``."""
    sel = Selector(text=f"<html><body>{body_html}</body></html>")
    text = join_lines(" ".join(sel.xpath(
        "//body//text()[not(ancestor::figure) and not(ancestor::script) and not(ancestor::style)]").getall()))
    figures: dict[str, tuple[str, str | None, str | None, str | None]] = {}
    for img in sel.css("img"):
        attrs = _data_attrs(img)
        src = attrs.get("src") if is_web_url(attrs.get("src")) else img.attrib.get("src")
        if not is_web_url(src) or src in figures:
            continue
        caption = join_lines(" ".join(img.xpath("ancestor::figure[1]//figcaption//text()").getall()))
        # the block the figure sits in (Substack wraps it in a div); its neighbours are the post's paragraphs
        block = (img.xpath("ancestor::div[contains(@class, 'captioned-image-container')][1]")
                 or img.xpath("ancestor::figure[1]") or [img])[-1]
        before = " ".join(block.xpath("preceding-sibling::p[1]//text()").getall())
        after = " ".join(block.xpath("following-sibling::p[1]//text()").getall())
        alt = img.attrib.get("alt") or (attrs.get("alt") if isinstance(attrs.get("alt"), str) else None)
        figures[src] = (src, join_lines(alt), caption, join_lines(before, after))
    return text, list(figures.values())
