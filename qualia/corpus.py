"""The corpus: one SQLite file per profile with everything a crawl found.

Tables
  items       one row per thing crawled (profile, publication, post, board, pin), with its hop
              distance from the person (``degree``) and the edge that first reached it (``via_edge``)
  edges       association edges ``src -[relation]-> dst`` with the degree of ``dst`` along them
  image_refs  where an item shows an image: URL, role (cover, body, pin, carousel, story), alt, caption
  image_urls  URL -> content hash, so two URLs of one picture resolve to one stored file
  images      content-addressed files under ``<workspace>/images/<aa>/<sha256>.<ext>``
  crawl_done  what a crawl has read to its end (a pin's detail, a board's whole feed): a later crawl
              skips it, so a second crawl of an unchanged world asks for little. Written in the same
              transactions as what was read, so a killed crawl never marks done what it did not store
  feedback    people's marks on search results: who said that an index row fits (or does not fit) a
              query, and when; one row per (who, query, row), the latest mark replacing an earlier one
              (``qualia.feedback`` turns them into training pairs)

No torch here: the crawler writes through this module and must stay light.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qualia import images, workspace
from qualia.errors import NotFound

SCHEMA_VERSION = 4  # 2: image_refs.context (the text around a figure); 3: crawl_done; 4: feedback

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    degree       INTEGER NOT NULL,
    via_edge     INTEGER REFERENCES edges(id),
    title        TEXT,
    text         TEXT,
    url          TEXT,
    published_at TEXT,
    data         TEXT,
    first_seen   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_kind ON items(source, kind);
CREATE TABLE IF NOT EXISTS edges (
    id       INTEGER PRIMARY KEY,
    src      TEXT NOT NULL,
    dst      TEXT NOT NULL,
    relation TEXT NOT NULL,
    degree   INTEGER NOT NULL,
    UNIQUE (src, dst, relation)
);
CREATE TABLE IF NOT EXISTS image_refs (
    item_id  TEXT NOT NULL REFERENCES items(id),
    url      TEXT NOT NULL,
    role     TEXT NOT NULL,
    alt      TEXT,
    caption  TEXT,
    position INTEGER NOT NULL DEFAULT 0,
    context  TEXT,
    PRIMARY KEY (item_id, url)
);
CREATE INDEX IF NOT EXISTS image_refs_url ON image_refs(url);
CREATE TABLE IF NOT EXISTS image_urls (
    url        TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL REFERENCES images(sha256),
    fetched_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    sha256 TEXT PRIMARY KEY,
    path   TEXT NOT NULL,
    format TEXT NOT NULL,
    width  INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS crawl_done (
    key     TEXT PRIMARY KEY,
    done_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    who       TEXT NOT NULL,
    query     TEXT NOT NULL,
    target    TEXT NOT NULL,
    fits      INTEGER NOT NULL,
    modality  TEXT NOT NULL,
    sha256    TEXT,
    text      TEXT,
    item_id   TEXT,
    marked_at REAL NOT NULL,
    PRIMARY KEY (who, query, target)
);
"""


@dataclass(frozen=True)
class ImageOccurrence:
    """One place an item shows a stored picture: the raw material of a text-image pair."""

    item_id: str
    source: str
    kind: str
    degree: int
    item_title: str | None
    item_text: str | None
    item_url: str | None
    image_url: str
    role: str
    alt: str | None
    caption: str | None
    position: int
    sha256: str
    image_path: Path
    context: str | None = None


class Corpus:
    """A profile's corpus. Safe to open from several processes (WAL, busy timeout)."""

    def __init__(self, path: Path | str, images_root: Path | str, readonly: bool = False):
        self.path = Path(path)
        self.images_root = Path(images_root)
        if readonly:
            if not self.path.exists():
                raise NotFound(f"no corpus at {self.path}")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._migrate()
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.db.commit()
        self.db.row_factory = sqlite3.Row

    def _migrate(self) -> None:
        """Bring a corpus written by an older qualia up to ``SCHEMA_VERSION`` (columns only ever added)."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(image_refs)")}
        if "context" not in columns:
            self.db.execute("ALTER TABLE image_refs ADD COLUMN context TEXT")

    def _has_context(self) -> bool:
        return any(row[1] == "context" for row in self.db.execute("PRAGMA table_info(image_refs)"))

    @classmethod
    def open(cls, ws: workspace.Workspace, profile: str, readonly: bool = False) -> Corpus:
        """``profile``'s corpus in ``ws``; read-only opening of a missing one names the steps to make it."""
        if readonly:
            ws.require(profile, "corpus")
        return cls(ws.corpus_path(profile), ws.images_dir, readonly=readonly)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def commit(self) -> None:
        self.db.commit()

    # -- writing -------------------------------------------------------------------------------

    def add_edge(self, src: str, dst: str, relation: str, degree: int) -> int:
        self.db.execute(
            "INSERT INTO edges(src, dst, relation, degree) VALUES (?,?,?,?) "
            "ON CONFLICT(src, dst, relation) DO UPDATE SET degree=min(degree, excluded.degree)",
            (src, dst, relation, degree),
        )
        row = self.db.execute(
            "SELECT id FROM edges WHERE src=? AND dst=? AND relation=?", (src, dst, relation)
        ).fetchone()
        return int(row[0])

    def upsert_item(
        self,
        item_id: str,
        *,
        source: str,
        kind: str,
        degree: int,
        title: str | None = None,
        text: str | None = None,
        url: str | None = None,
        published_at: str | None = None,
        data: dict[str, Any] | None = None,
        via: tuple[str, str] | None = None,
    ) -> bool:
        """Insert or refresh an item; returns True if it was new.

        ``via`` is ``(src_id, relation)``: the edge that reached it. An item reached again by a
        shorter path takes the lower degree and that path; fields a later sighting lacks are kept.
        """
        now = time.time()
        edge_id = self.add_edge(via[0], item_id, via[1], degree) if via else None
        existing = self.db.execute("SELECT degree FROM items WHERE id=?", (item_id,)).fetchone()
        payload = json.dumps(data, sort_keys=True) if data is not None else None
        if existing is None:
            self.db.execute(
                "INSERT INTO items(id, source, kind, degree, via_edge, title, text, url, published_at,"
                " data, first_seen, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (item_id, source, kind, degree, edge_id, title, text, url, published_at, payload, now, now),
            )
            return True
        closer = degree < existing["degree"]
        self.db.execute(
            "UPDATE items SET title=coalesce(?, title), text=coalesce(?, text), url=coalesce(?, url),"
            " published_at=coalesce(?, published_at), data=coalesce(?, data), updated_at=?,"
            " degree=CASE WHEN ? THEN ? ELSE degree END,"
            " via_edge=CASE WHEN ? OR via_edge IS NULL THEN coalesce(?, via_edge) ELSE via_edge END"
            " WHERE id=?",
            (title, text, url, published_at, payload, now, closer, degree, closer, edge_id, item_id),
        )
        return False

    def add_image_ref(
        self,
        item_id: str,
        url: str,
        role: str,
        alt: str | None = None,
        caption: str | None = None,
        position: int = 0,
        context: str | None = None,
    ) -> None:
        """``context``: the text around the picture where it was seen (a post's paragraphs before and after)."""
        self.db.execute(
            "INSERT INTO image_refs(item_id, url, role, alt, caption, position, context) VALUES (?,?,?,?,?,?,?) "
            "ON CONFLICT(item_id, url) DO UPDATE SET role=excluded.role, alt=coalesce(excluded.alt, alt),"
            " caption=coalesce(excluded.caption, caption), position=excluded.position,"
            " context=coalesce(excluded.context, context)",
            (item_id, url, role, alt, caption, position, context),
        )

    def store_image(self, url: str, data: bytes) -> tuple[str, bool]:
        """Validate and store picture bytes fetched from ``url``: (their sha256, whether the picture is new).

        The file is written once per content hash, however many URLs lead to it.
        """
        decoded = images.decode(data)  # fully, once: what the corpus stores can be read by training and indexing
        fmt, width, height = decoded.format, decoded.width, decoded.height
        sha = hashlib.sha256(data).hexdigest()
        rel = f"{sha[:2]}/{sha}.{images.FORMATS[fmt]}"
        target = self.images_root / rel
        if not target.exists():
            workspace.atomic_write_bytes(target, data)
        added = self.db.execute(
            "INSERT OR IGNORE INTO images(sha256, path, format, width, height, bytes) VALUES (?,?,?,?,?,?)",
            (sha, rel, fmt, width, height, len(data)),
        ).rowcount
        self.db.execute(
            "INSERT INTO image_urls(url, sha256, fetched_at) VALUES (?,?,?) "
            "ON CONFLICT(url) DO UPDATE SET sha256=excluded.sha256, fetched_at=excluded.fetched_at",
            (url, sha, time.time()),
        )
        return sha, added > 0

    # -- reading -------------------------------------------------------------------------------

    def item(self, item_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM items WHERE id=?", (item_id,)).fetchone()
        if row is None:
            return None
        record = dict(row)
        record["data"] = json.loads(record["data"]) if record["data"] else None
        via = self.db.execute(
            "SELECT src, relation, degree FROM edges WHERE id=?", (record.pop("via_edge"),)
        ).fetchone()
        record["via"] = dict(via) if via else None
        record["images"] = [
            dict(r)
            for r in self.db.execute(
                f"SELECT r.url, r.role, r.alt, r.caption, {'r.context' if self._has_context() else 'NULL AS context'},"
                " u.sha256 FROM image_refs r "
                "LEFT JOIN image_urls u ON u.url = r.url WHERE r.item_id=? ORDER BY r.position",
                (item_id,),
            )
        ]
        return record

    def item_data(self, item_id: str) -> dict[str, Any] | None:
        """The stored ``data`` of an item: None if there is no such item, {} if it has none."""
        row = self.db.execute("SELECT data FROM items WHERE id=?", (item_id,)).fetchone()
        if row is None:
            return None
        return json.loads(row[0]) if row[0] else {}

    def mark_done(self, key: str) -> None:
        """Record that a crawl read ``key`` (a page or a whole feed, named by the crawler) to its end."""
        self.db.execute("INSERT OR REPLACE INTO crawl_done(key, done_at) VALUES (?,?)", (key, time.time()))

    def is_done(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM crawl_done WHERE key=?", (key,)).fetchone() is not None

    def add_mark(self, who: str, query: str, target: dict[str, Any], fits: bool) -> tuple[dict[str, Any], bool]:
        """Store ``who``'s mark that index row ``target`` (its ``id``, ``modality``, ``sha256``, ``text``,
        ``item_id``) fits ``query`` or not, in one transaction of its own: (the stored mark, whether it is
        new). A second mark by the same person on the same row for the same words replaces the first, so
        clicking twice never counts twice. Synchronous=FULL: a mark answered as stored survives a power cut."""
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")  # the check and the write see one state, whoever else writes
                new = self.db.execute(
                    "SELECT 1 FROM feedback WHERE who=? AND query=? AND target=?", (who, query, target["id"])
                ).fetchone() is None
                self.db.execute(
                    "INSERT INTO feedback(who, query, target, fits, modality, sha256, text, item_id, marked_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(who, query, target) DO UPDATE SET fits=excluded.fits,"
                    " modality=excluded.modality, sha256=excluded.sha256, text=excluded.text,"
                    " item_id=excluded.item_id, marked_at=excluded.marked_at",
                    (who, query, target["id"], int(bool(fits)), target["modality"], target.get("sha256"),
                     target.get("text"), target.get("item_id"), time.time()),
                )
        finally:
            self.db.execute("PRAGMA synchronous=NORMAL")
        return self.marks(who=who, query=query, target=target["id"])[0], new

    def marks(self, who: str | None = None, query: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
        """The stored marks (all, or those matching the arguments given), oldest first."""
        if not self._has_table("feedback"):  # a corpus written before marks existed, opened read-only
            return []
        where = [(column, value) for column, value in (("who", who), ("query", query), ("target", target))
                 if value is not None]  # fmt: skip
        sql = "SELECT * FROM feedback" + (" WHERE " + " AND ".join(f"{c}=?" for c, _ in where) if where else "")
        rows = self.db.execute(sql + " ORDER BY marked_at, who, query, target", [v for _, v in where])
        return [{**dict(row), "fits": bool(row["fits"])} for row in rows]

    def _has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
        return self.db.execute(query, (name,)).fetchone() is not None

    def has_item(self, item_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone() is not None

    def unfetched_image_urls(self, item_id: str) -> list[str]:
        """The pictures ``item_id`` shows that were never stored (their fetch failed or was cut off)."""
        query = ("SELECT r.url FROM image_refs r LEFT JOIN image_urls u ON u.url = r.url"
                 " WHERE r.item_id=? AND u.url IS NULL ORDER BY r.position")
        return [row[0] for row in self.db.execute(query, (item_id,))]

    def has_image_ref(self, item_id: str, url: str) -> bool:
        query = "SELECT 1 FROM image_refs WHERE item_id=? AND url=?"
        return self.db.execute(query, (item_id, url)).fetchone() is not None

    def is_image_shown(self, url: str) -> bool:
        """Whether any stored item shows the picture at ``url``."""
        return self.db.execute("SELECT 1 FROM image_refs WHERE url=? LIMIT 1", (url,)).fetchone() is not None

    def has_image_url(self, url: str) -> bool:
        return self.image_sha256(url) is not None

    def image_sha256(self, url: str) -> str | None:
        """The content hash of the picture fetched from ``url``, or None if it was not fetched."""
        row = self.db.execute("SELECT sha256 FROM image_urls WHERE url=?", (url,)).fetchone()
        return row[0] if row else None

    def first_image_urls(self) -> dict[str, str]:
        """sha256 -> the first URL the picture was fetched from."""
        first: dict[str, str] = {}
        for sha, url in self.db.execute("SELECT sha256, url FROM image_urls ORDER BY fetched_at, url"):
            first.setdefault(sha, url)
        return first

    def items_without_path(self) -> list[str]:
        """Items beyond degree 0 that record no edge reaching them (a crawl must never leave one)."""
        query = "SELECT id FROM items WHERE degree > 0 AND via_edge IS NULL ORDER BY id"
        return [row[0] for row in self.db.execute(query)]

    def items(self, kind: str | None = None) -> Iterator[sqlite3.Row]:
        if kind is None:
            yield from self.db.execute("SELECT * FROM items ORDER BY id")
        else:
            yield from self.db.execute("SELECT * FROM items WHERE kind=? ORDER BY id", (kind,))

    def image_occurrences(self) -> list[ImageOccurrence]:
        """Every (item, stored picture) pairing, in a stable order."""
        rows = self.db.execute(
            "SELECT i.id AS item_id, i.source, i.kind, i.degree, i.title AS item_title,"
            " i.text AS item_text, i.url AS item_url, r.url AS image_url, r.role, r.alt, r.caption,"
            f" r.position, {'r.context' if self._has_context() else 'NULL AS context'}, im.sha256, im.path"
            " FROM image_refs r"
            " JOIN items i ON i.id = r.item_id"
            " JOIN image_urls u ON u.url = r.url"
            " JOIN images im ON im.sha256 = u.sha256"
            " ORDER BY i.id, r.position, r.url"
        )
        return [
            ImageOccurrence(
                **{k: row[k] for k in row.keys() if k != "path"},
                image_path=self.images_root / row["path"],
            )
            for row in rows
        ]

    def image(self, sha256: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM images WHERE sha256=?", (sha256,)).fetchone()

    def image_path(self, sha256: str) -> Path | None:
        row = self.image(sha256)
        return self.images_root / row["path"] if row else None

    def counts(self) -> dict[str, Any]:
        """Counts in the shape of ``qualia corpus --json`` (pairs are added by ``qualia.pairs``)."""
        q = self.db.execute
        by_source = {"substack": 0, "pinterest": 0}
        by_source.update({s: n for s, n in q("SELECT source, count(*) FROM items GROUP BY source")})
        by_degree = {str(d): n for d, n in q("SELECT degree, count(*) FROM items GROUP BY degree ORDER BY degree")}
        by_kind = {k: n for k, n in q("SELECT kind, count(*) FROM items GROUP BY kind ORDER BY kind")}
        return {
            "items": by_source,
            "by_degree": by_degree,
            "by_kind": by_kind,
            "images": q("SELECT count(*) FROM images").fetchone()[0],
            "image_urls": q("SELECT count(*) FROM image_urls").fetchone()[0],
            "image_refs": q("SELECT count(*) FROM image_refs").fetchone()[0],
            "image_ref_urls": q("SELECT count(DISTINCT url) FROM image_refs").fetchone()[0],
            "edges": q("SELECT count(*) FROM edges").fetchone()[0],
            "edges_by_relation": {r: n for r, n in q("SELECT relation, count(*) FROM edges GROUP BY relation ORDER BY relation")},
            "feedback": self._feedback_counts(),
        }

    def _feedback_counts(self) -> dict[str, int]:
        marks = self.marks()
        return {"marks": len(marks), "fits": sum(m["fits"] for m in marks),
                "does_not_fit": sum(not m["fits"] for m in marks)}  # fmt: skip
