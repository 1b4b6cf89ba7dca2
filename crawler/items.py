"""What the spiders hand to the pipelines: the crawl's schema.

A ``Record`` becomes (or refreshes) one row of the corpus's ``items`` table, together with the edge
that reached it and the images it shows; a ``PictureBytes`` is one downloaded image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SOURCES = ("substack", "pinterest", "folder")
# "folder": pictures a person imported from their own disk (``qualia import --folder``)
KINDS = {"substack": ("user", "publication", "post"), "pinterest": ("user", "board", "pin"),
         "folder": ("user", "picture")}
ROLES = ("cover", "body", "pin", "carousel", "story")
CAPPED_KINDS = ("post", "pin")  # what --max-items counts


@dataclass
class ImageRef:
    url: str
    role: str  # one of ROLES
    alt: str | None = None
    caption: str | None = None
    position: int = 0
    context: str | None = None  # the text around the picture (a body figure's neighbouring paragraphs)


@dataclass
class Record:
    """One thing crawled, seen at ``degree`` hops from the person, reached along ``via``.

    ``complete`` marks a record read from the thing's own page (its fields win over what a listing
    said); a sighting in a listing (``complete=False``) only fills what is not known yet, so the
    order pages arrive in never changes the result.
    """

    id: str  # "{source}:{kind}:{key}"
    source: str
    kind: str
    degree: int
    via: tuple[str, str] | None = None  # (source item id, relation)
    title: str | None = None
    text: str | None = None
    url: str | None = None
    published_at: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    images: list[ImageRef] = field(default_factory=list)
    complete: bool = False


@dataclass
class PictureBytes:
    url: str  # the URL as the site gave it (before any redirect)
    body: bytes


@dataclass
class Done:
    """A page or a whole feed read to its end (``key``: what it was, ``@`` the degree it was read at).
    A later crawl skips what is done (``crawler.middlewares.CorpusAwareRequests``)."""

    key: str
