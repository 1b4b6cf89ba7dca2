"""The sample person's world: who she is, what she writes and pins, and what a crawl must find.

Everything is generated from fixed seeds, so two runs (or two processes) build the same world. Paths
are relative to the site's root; the server prefixes its base URL when it renders them. The
expected corpus of a crawl is derived here, from the same structures the server renders, by a
breadth-first walk with the crawler's degree rules (see ``World.expected_counts``).
"""

from __future__ import annotations

import hashlib
import io
import random
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from samplesite.pictures import STYLES, SUBJECTS, draw_picture

SUBSTACK_ROOT = "/substack"
PUBLICATION_ROOT = "/pub/{subdomain}"
PINTEREST_ROOT = "/pinterest"
SUBSTACK_CDN = "/substackcdn/image/fetch/w_1456,c_limit"
PINIMG = "/pinimg"
PINVIDEO = "/pinvideo"

ARCHIVE_MAX_LIMIT = 50
PINTEREST_PAGE_SIZE = 25
SEED = 20240601


@dataclass(frozen=True)
class Picture:
    style: str
    subject: str
    seed: int
    fmt: str = "jpg"  # "jpg" or "png"
    size: int = 96

    @property
    def key(self) -> str:
        return hashlib.sha1(f"{self.style}|{self.subject}|{self.seed}|{self.fmt}".encode()).hexdigest()[:32]

    @property
    def content_type(self) -> str:
        return "image/png" if self.fmt == "png" else "image/jpeg"

    def render(self) -> bytes:
        buf = io.BytesIO()
        img = draw_picture(self.style, self.subject, self.seed, self.size)
        if self.fmt == "png":
            img.save(buf, "PNG", optimize=False)
        else:
            img.save(buf, "JPEG", quality=85)
        return buf.getvalue()


@dataclass
class Figure:
    url: str
    alt: str
    caption: str


@dataclass
class Post:
    id: int
    publication_id: int
    slug: str
    title: str
    subtitle: str
    post_date: str
    cover_url: str
    figures: list[Figure]
    paragraphs: list[str]
    audience: str = "everyone"

    @property
    def paid(self) -> bool:
        return self.audience == "only_paid"


@dataclass
class Publication:
    id: int
    name: str
    subdomain: str
    custom_domain: str | None
    authors: list[tuple[str, str]]  # (handle, name)
    posts: list[Post] = field(default_factory=list)  # newest first
    recommends: list[int] = field(default_factory=list)


@dataclass
class SubstackUser:
    id: int
    handle: str
    name: str
    bio: str
    photo_url: str
    subscriptions: list[int]
    writes: list[int]


@dataclass
class CarouselSlot:
    url: str
    title: str
    details: str


@dataclass
class StoryPage:
    url: str
    text: str


@dataclass
class Pin:
    id: str
    title: str
    description: str
    closeup: str  # closeup_unified_description, only in the detailed field set
    link: str
    picture: Picture
    orig_url: str
    small_url: str
    pinner: str
    board_id: str
    board_name: str
    board_url: str
    created_at: str
    alt_text: str | None = None
    carousel: list[CarouselSlot] = field(default_factory=list)
    story: list[StoryPage] = field(default_factory=list)
    video_url: str | None = None
    related: list[str] = field(default_factory=list)

    def grid_image_urls(self) -> list[str]:
        return list(dict.fromkeys([self.orig_url, *(s.url for s in self.carousel)]))

    def detail_image_urls(self) -> list[str]:
        return list(dict.fromkeys([*self.grid_image_urls(), *(p.url for p in self.story)]))


@dataclass
class Board:
    id: str
    name: str
    slug: str
    description: str
    owner: str
    pin_ids: list[str]
    more_ideas: list[str]
    created_at: str


# -- words --------------------------------------------------------------------------------------

STYLE_AND_SUBJECT = [
    "{style} again: the {subject}",
    "the {subject} in {style} light",
    "a {subject}, pure {style}",
    "another {style} {subject} for the collection",
    "{subject} study, {style}",
    "this is what I mean by {style}: a {subject}",
    "kept this one. {style}, {subject}, nothing else",
    "{style} {subject}",
    "my {subject} on a {style} day",
    "{subject}s look best in {style}",
]
STYLE_ONLY = ["{style}", "so {style}", "{style}, always {style}", "more {style}", "pure {style}", "{style} forever"]
SUBJECT_ONLY = ["a {subject}", "the old {subject}", "{subject} by the wall", "just a {subject}", "one more {subject}"]
FILLER = [
    "saved for later", "from the weekend", "no filter", "found on a walk", "notes to self",
    "for the mood board", "via a friend", "again and again", "Sunday", "from the archive",
]
PROSE = [
    "I went back to the {subject} this week and it was {style} again, the way it gets in late autumn.",
    "Nobody else calls it {style}, but that is the only word I have for it.",
    "There is a {subject} in every one of these, if you look.",
    "The light did the work; I only stood still.",
    "Some weeks are all {style}. This was one of them.",
    "Writing this from the kitchen table with cold coffee.",
    "A reader asked what {style} means. It means this {subject}.",
    "More soon, and thank you for reading.",
]
POST_TITLES = [
    "Notes on {style}", "The {subject} issue", "A week of {style}", "Why I keep saying {style}",
    "{Style}, and a {subject}", "Letters from a {style} morning", "On {subject}s", "Small {style} things",
    "The {style} file", "What the {subject} knew",
]
# The paragraph just before a figure that has neither alt text nor a caption: the only words it gets.
AROUND_A_FIGURE = [
    "Here is the {subject} from Tuesday, {style} all the way through.",
    "Below: a {subject}, and the {style} that made me stop.",
    "This next one is the {subject} I keep talking about. {Style}, of course.",
    "The {subject} below was the most {style} thing all week.",
]
OTHER_PINNERS = ["juno_k", "lisbeth.a", "oaktree_studio", "harbourlight", "pia_makes", "north_rooms", "tomasz_b"]


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class _Writer:
    """Texts in a voice: the person always uses her private style words; others mostly do."""

    def __init__(self, rng: random.Random, style_rate: float, misuse_rate: float = 0.0, noise_rate: float = 0.1):
        self.rng = rng
        self.style_rate = style_rate
        self.misuse_rate = misuse_rate  # others use her words for other looks now and then
        self.noise_rate = noise_rate  # captions that say nothing about the picture

    def caption(self, style: str, subject: str) -> str:
        r = self.rng
        if r.random() < self.noise_rate:
            return r.choice(FILLER)
        if self.misuse_rate and r.random() < self.misuse_rate:
            style = r.choice([s for s in STYLES if s != style])
        roll = r.random()
        if roll < self.style_rate * 0.75:
            text = r.choice(STYLE_AND_SUBJECT)
        elif roll < self.style_rate:
            text = r.choice(STYLE_ONLY)
        else:
            text = r.choice(SUBJECT_ONLY)
        text = text.format(style=style, subject=subject)
        if r.random() < 0.3:
            text = f"{text} ({r.choice(FILLER)})"
        return text

    def prose(self, style: str, subject: str, n: int) -> list[str]:
        return [s.format(style=style, subject=subject) for s in self.rng.sample(PROSE, n)]

    def title(self, style: str, subject: str) -> str:
        return self.rng.choice(POST_TITLES).format(style=style, Style=style.capitalize(), subject=subject)


def _timestamp(start: datetime, steps_back: int, hours: int) -> datetime:
    return start - timedelta(hours=hours * steps_back)


class World:
    """The sample person and everything reachable from her, plus what lies one step too far."""

    def __init__(self, scale: int = 1) -> None:
        """``scale`` multiplies the posts, pins and related pins (1: the world the tests check against;
        larger: a world for the crawl benchmark)."""
        self.scale = max(1, int(scale))
        self.rng = random.Random(SEED)
        self.pictures: dict[str, Picture] = {}  # path -> picture
        self.publications: dict[int, Publication] = {}
        self.posts: dict[int, Post] = {}
        self.boards: dict[str, Board] = {}
        self.pins: dict[str, Pin] = {}
        self._seed = 0
        self._build_substack()
        self._build_pinterest()
        self._share_a_picture()

    # -- pictures ---------------------------------------------------------------------------

    def _new_picture(self, style: str | None = None, subject: str | None = None, fmt: str = "jpg") -> Picture:
        self._seed += 1
        return Picture(style or self.rng.choice(STYLES), subject or self.rng.choice(SUBJECTS), self._seed, fmt)

    def _cdn_url(self, pic: Picture) -> str:
        path = f"{SUBSTACK_CDN}/{pic.key}.{'png' if pic.fmt == 'png' else 'jpeg'}"
        self.pictures[path] = pic
        return path

    def _pinimg_urls(self, pic: Picture) -> tuple[str, str]:
        k = pic.key
        tail = f"{k[:2]}/{k[2:4]}/{k[4:6]}/{k}.{pic.fmt}"
        orig, small = f"{PINIMG}/originals/{tail}", f"{PINIMG}/236x/{tail}"
        self.pictures[orig] = pic
        self.pictures[small] = Picture(pic.style, pic.subject, pic.seed, pic.fmt, size=64)
        # the size a data export's picture hashes are read at: always named .jpg, whatever the picture is
        self.pictures[f"{PINIMG}/736x/{k[:2]}/{k[2:4]}/{k[4:6]}/{k}.jpg"] = pic
        return orig, small

    # -- substack ---------------------------------------------------------------------------

    def _build_substack(self) -> None:
        rng = self.rng
        self.person = SubstackUser(
            id=1001, handle="mara", name="Mara Lindqvist",
            bio="Photographs of ordinary rooms. I have my own words for light.",
            photo_url=self._cdn_url(self._new_picture("paper moon", "window")),
            subscriptions=[2002, 2003], writes=[2001],
        )
        # (id, name, subdomain, custom_domain, authors, n_posts, recommends)
        specs = [
            (2001, "Quiet Hours", "quiethours", None, [("mara", "Mara Lindqvist")], 16, [2004, 2002]),
            (2002, "Tidewater Notes", "tidewater", "tidewaternotes.example", [("tessa", "Tessa Marsh")], 14, [2005]),
            (2003, "Small Kitchens", "smallkitchens", None, [("jun", "Jun Okafor"), ("ines", "Ines Vale")], 12,
             [2004, 2006]),
            (2004, "Ember Letters", "emberletters", None, [("cal", "Cal Reyes")], 10, []),
            (2005, "Paper Moon Press", "papermoon", "papermoon.example", [("odile", "Odile Fournier")], 10, [2007]),
            (2006, "Static Field", "staticfield", None, [("rook", "Rook Adeyemi")], 8, [2001]),
            (2007, "Greenhouse Almanac", "greenhousealmanac", None, [("wren", "Wren Hale")], 6, [2003]),
        ]
        start = datetime(2024, 6, 1, 9, 0, tzinfo=timezone.utc)
        for pub_id, name, sub, domain, authors, n_posts, recs in specs:
            pub = Publication(pub_id, name, sub, domain, authors, recommends=recs)
            writer = _Writer(rng, 0.95, 0.0) if pub_id == 2001 else _Writer(rng, 0.7, 0.15)
            for k in range(n_posts * self.scale):
                cover = self._new_picture()
                title = writer.title(cover.style, cover.subject)
                paragraphs = writer.prose(cover.style, cover.subject, rng.randint(2, 4))
                figures = []
                for f in range(rng.randint(1, 4)):
                    fmt = "png" if (pub_id == 2001 and f == 1 and k % 3 == 0) else "jpg"
                    pic = self._new_picture(fmt=fmt)
                    if rng.random() < 0.3:  # no alt, no caption: only the paragraph before it says what it is
                        around = rng.choice(AROUND_A_FIGURE).format(style=pic.style, Style=pic.style.capitalize(),
                                                                    subject=pic.subject)
                        while len(paragraphs) <= f:
                            paragraphs.append(rng.choice(FILLER).capitalize() + ".")
                        paragraphs[f] = around
                        figures.append(Figure(self._cdn_url(pic), "", ""))
                        continue
                    figures.append(Figure(self._cdn_url(pic), writer.caption(pic.style, pic.subject) if rng.random() < 0.8
                                          else f"{pic.subject}", writer.caption(pic.style, pic.subject)))
                post = Post(
                    id=pub_id * 1000 + k, publication_id=pub_id, slug=f"{slugify(title)}-{k}", title=title,
                    subtitle=writer.caption(cover.style, cover.subject),
                    post_date=_timestamp(start, k, 53 + pub_id % 7).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    cover_url=self._cdn_url(cover), figures=figures, paragraphs=paragraphs,
                )
                pub.posts.append(post)
                self.posts[post.id] = post
            self.publications[pub_id] = pub
        self.paid_post = self.publications[2002].posts[2]
        self.paid_post.audience = "only_paid"

    # -- pinterest --------------------------------------------------------------------------

    def _make_pin(self, pin_id: str, writer: _Writer, pinner: str, board: tuple[str, str, str], when: datetime,
                  style: str | None = None, subject: str | None = None) -> Pin:
        rng = self.rng
        fmt = "png" if int(pin_id) % 9 == 4 else "jpg"
        pic = self._new_picture(style, subject, fmt)
        orig, small = self._pinimg_urls(pic)
        description = writer.caption(pic.style, pic.subject)
        title = writer.caption(pic.style, pic.subject) if rng.random() < 0.5 else ""
        pin = Pin(
            id=pin_id, title=title, description=description,
            closeup=f"{description}. {rng.choice(FILLER).capitalize()}.",
            link=f"https://blog.example/{slugify(pic.subject)}-{pin_id[-4:]}", picture=pic, orig_url=orig,
            small_url=small, pinner=pinner, board_id=board[0], board_name=board[1], board_url=board[2],
            created_at=when.strftime("%a, %d %b %Y %H:%M:%S +0000"),
            alt_text=f"{pic.subject} in {pic.style}" if rng.random() < 0.4 else None,
        )
        self.pins[pin_id] = pin
        return pin

    def _build_pinterest(self) -> None:
        rng = self.rng
        self.pinterest_username = "maralind"
        mara = _Writer(rng, 0.95)
        others = _Writer(rng, 0.7, misuse_rate=0.15)
        start = datetime(2024, 5, 30, 18, 0, tzinfo=timezone.utc)
        names = [s for s in STYLES] + [f"{s}s" for s in SUBJECTS]
        names += [f"{STYLES[i % len(STYLES)]} {SUBJECTS[(i * 3) % len(SUBJECTS)]}s" for i in range(26 - len(names))]
        own: list[Pin] = []
        for b, name in enumerate(names):
            board_id = str(550000000000 + b)
            slug = slugify(name)
            url = f"/{self.pinterest_username}/{slug}/"
            style = name if name in STYLES else next((s for s in STYLES if name.startswith(s + " ")), None)
            subject = next((s for s in SUBJECTS if name.endswith(f"{s}s")), None)
            n = (30 if b == 0 else rng.randint(5, 8)) * self.scale
            pins = []
            for _ in range(n):
                pin_id = str(880000000000 + len(own))
                pin = self._make_pin(pin_id, mara, self.pinterest_username, (board_id, name, url),
                                     _timestamp(start, len(own), 7),
                                     style if rng.random() < 0.85 else None, subject if rng.random() < 0.85 else None)
                pins.append(pin.id)
                own.append(pin)
            self.boards[board_id] = Board(board_id, name, slug, f"{name}: things I keep", self.pinterest_username,
                                          pins, [], _timestamp(start, 400 + b, 24).strftime("%a, %d %b %Y %H:%M:%S +0000"))
        self.own_pin_ids = [p.id for p in own]

        def other_pin(n: int, base: int) -> Pin:
            pinner = OTHER_PINNERS[n % len(OTHER_PINNERS)]
            bname = f"{rng.choice(STYLES)} finds"
            board = (str(base // 1000 + n), bname, f"/{pinner}/{slugify(bname)}/")
            return self._make_pin(str(base + n), others, pinner, board, _timestamp(start, n, 11))

        pool = [other_pin(n, 770000000000) for n in range(120 * self.scale)]
        far = [other_pin(n, 660000000000) for n in range(30)]
        self.degree3_pin_ids = [p.id for p in far]
        for i, pin in enumerate(own):
            if i % 4 != 3:
                pin.related = [pool[(3 * i) % len(pool)].id, pool[(3 * i + 1) % len(pool)].id]
            if i % 23 == 5:
                pin.related.append(own[(i + 1) % len(own)].id)  # "more like this" may be her own pin
        for i, pin in enumerate(pool):
            pin.related = [far[i % len(far)].id, pool[(i + 7) % len(pool)].id]
        for b, board in enumerate(self.boards.values()):
            board.more_ideas = [pool[(b * 4 + k) % len(pool)].id for k in range(3)]

        # Her special pins: a carousel, a video (take the still, skip the video) and a story pin.
        carousel = own[3]
        for k in range(3):
            pic = self._new_picture(carousel.picture.style if k == 0 else None, fmt="jpg")
            url = carousel.orig_url if k == 0 else self._pinimg_urls(pic)[0]
            p = carousel.picture if k == 0 else pic
            carousel.carousel.append(CarouselSlot(url, mara.caption(p.style, p.subject), mara.caption(p.style, p.subject)))
        self.carousel_pin_id = carousel.id
        video = own[7]
        video.video_url = f"{PINVIDEO}/720p/{video.picture.key}.mp4"
        self.video_pin_id = video.id
        story = own[11]
        story.story.append(StoryPage(story.orig_url, mara.caption(story.picture.style, story.picture.subject)))
        for _ in range(2):
            pic = self._new_picture()
            story.story.append(StoryPage(self._pinimg_urls(pic)[0], mara.caption(pic.style, pic.subject)))
        self.story_pin_id = story.id

    def _share_a_picture(self) -> None:
        """One picture under two URLs: her newest post's cover is also her first pin's original."""
        post = self.publications[2001].posts[0]
        pin = self.pins[self.own_pin_ids[0]]
        self.pictures[post.cover_url] = pin.picture
        self.shared_picture_paths = [pin.orig_url, post.cover_url]

    # -- lookups used by the server ---------------------------------------------------------

    def publication_by_subdomain(self, subdomain: str) -> Publication | None:
        return next((p for p in self.publications.values() if p.subdomain == subdomain), None)

    def user_pins(self, username: str) -> list[Pin]:
        if username != self.pinterest_username:
            return []
        return sorted((self.pins[i] for i in self.own_pin_ids), key=lambda p: p.id)

    def user_boards(self, username: str) -> list[Board]:
        return [b for b in self.boards.values() if b.owner == username]

    # -- what a crawl must find -------------------------------------------------------------

    def _graph(self, node: str) -> list[tuple[str, str, int]]:
        """Out-edges the crawler follows from ``node``: (dst, relation, added degree)."""
        key = node.rsplit(":", 1)[1]
        if node.startswith("substack:user:"):
            return [(f"substack:publication:{p}", "subscribes", 1) for p in self.person.subscriptions] + [
                (f"substack:publication:{p}", "writes", 1) for p in self.person.writes]
        if node.startswith("substack:publication:"):
            pub = self.publications[int(key)]
            return [(f"substack:post:{p.id}", "publishes", 0) for p in pub.posts] + [
                (f"substack:publication:{r}", "recommends", 1) for r in pub.recommends]
        if node.startswith("pinterest:user:"):
            return [(f"pinterest:board:{b.id}", "owns", 1) for b in self.user_boards(key)] + [
                (f"pinterest:pin:{p.id}", "pinned", 1) for p in self.user_pins(key)]
        if node.startswith("pinterest:board:"):
            board = self.boards[key]
            return [(f"pinterest:pin:{p}", "contains", 0) for p in board.pin_ids] + [
                (f"pinterest:pin:{p}", "more_ideas", 1) for p in board.more_ideas]
        if node.startswith("pinterest:pin:"):
            return [(f"pinterest:pin:{p}", "related", 1) for p in self.pins[key].related]
        return []

    def reach(self, depth: int, sources: tuple[str, ...] = ("substack", "pinterest")
              ) -> tuple[dict[str, int], set[tuple[str, str, str]]]:
        """Degrees of everything a complete crawl to ``depth`` stores, and the edges it records.

        A 0-1 breadth-first walk: listing a node's own content keeps its degree, following an
        association adds one. An edge is recorded when its source is expanded, which the crawler
        does only while the destination stays within ``depth``.
        """
        roots = [root for root in (f"substack:user:{self.person.handle}", f"pinterest:user:{self.pinterest_username}")
                 if root.split(":")[0] in sources]
        degree = {r: 0 for r in roots}
        queue = deque(roots)
        while queue:
            node = queue.popleft()
            for dst, _, added in self._graph(node):
                d = degree[node] + added
                if d <= depth and d < degree.get(dst, depth + 1):
                    degree[dst] = d
                    (queue.appendleft if added == 0 else queue.append)(dst)
        edges = {(src, dst, rel) for src in degree for dst, rel, added in self._graph(src)
                 if degree[src] + added <= depth}
        return degree, edges

    def image_refs(self, item_id: str, degree: int) -> list[str]:
        """Image paths the crawler records for an item (its pins' details are fetched at degree 1 only)."""
        kind, key = item_id.split(":")[1], item_id.rsplit(":", 1)[1]
        if kind == "post":
            post = self.posts[int(key)]
            return list(dict.fromkeys([post.cover_url, *([] if post.paid else [f.url for f in post.figures])]))
        if kind == "pin":
            pin = self.pins[key]
            return pin.detail_image_urls() if degree == 1 else pin.grid_image_urls()
        return []

    def expected_counts(self, depth: int = 2, sources: tuple[str, ...] = ("substack", "pinterest")) -> dict[str, Any]:
        """What a complete crawl of ``sources`` to ``depth`` stores, in the keys of ``Corpus.counts``."""
        degree, edges = self.reach(depth, sources)
        by_source = {"substack": 0, "pinterest": 0}
        by_degree: dict[str, int] = {}
        by_kind: dict[str, int] = {}
        refs: set[tuple[str, str]] = set()
        for item_id, d in degree.items():
            source, kind = item_id.split(":")[:2]
            by_source[source] += 1
            by_degree[str(d)] = by_degree.get(str(d), 0) + 1
            by_kind[kind] = by_kind.get(kind, 0) + 1
            refs.update((item_id, path) for path in self.image_refs(item_id, d))
        paths = {path for _, path in refs}
        return {
            "items": by_source,
            "by_degree": dict(sorted(by_degree.items())),
            "by_kind": dict(sorted(by_kind.items())),
            "images": len({self.pictures[p] for p in paths}),
            "image_urls": len(paths),
            "image_refs": len(refs),
            "edges": len(edges),
        }
