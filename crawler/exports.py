"""A person's own data exports, read into the crawl's records (``crawler.items``).

People can always download their own data, even when a site refuses crawlers: a Substack writer's
export (a ZIP, or the folder it unpacks to) and Pinterest's "Request your data" HTML file. Neither
format is documented and both drift, so reading is liberal: missing columns, ``No data`` values,
trailing commas, unknown sections and odd rows are taken in stride; what cannot be read is counted
and skipped, never fatal. What is not needed is never read: a Substack export's mailing lists and
per-post open/click files, a Pinterest export's IP addresses (docs/sources.md, "Exports").

Imported things get the ids the crawler gives them (``substack:post:<id>``, ``pinterest:pin:<id>``),
so an import and a crawl of the same person meet in one corpus without duplicates. They are degree 1,
reached from a degree-0 node that stands for the export, along an ``exported`` edge (or ``contains``
from a board).
"""

from __future__ import annotations

import ast
import csv
import html
import io
import logging
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath

from crawler.items import ImageRef, Record
from crawler.parsing import numeric_id, read_body
from crawler.urls import is_web_url
from qualia.errors import InvalidInput, NotFound
from qualia.text import join_lines

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 50 * 1024 * 1024  # one CSV or HTML file of an export; a bigger one is not an export
TRUE = {"true", "yes", "1", "t", "y"}
PAID = {"only_paid", "founding"}
PIN_LINK = re.compile(r'<a\s[^>]*href="[^"]*/pin/([A-Za-z0-9_-]{1,64})/?"[^>]*>.*?</a>', re.IGNORECASE | re.DOTALL)
HASH = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass
class ExportRead:
    """What an export held: the records to store, and what was skipped or read only in part, and why."""

    format: str
    records: list[Record] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def summary(self) -> dict[str, object]:
        kinds = Counter(r.kind for r in self.records)
        return {"format": self.format, "read": dict(sorted(kinds.items())), "skipped": dict(sorted(self.skipped.items()))}


# -- files, whether in a ZIP or a folder ----------------------------------------------------------


class _Files:
    """Read-only access to an export's files by relative path, in a ZIP or a folder; sizes bounded.

    A ZIP is read in place (nothing is extracted), so no member name ever becomes a path on disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise InvalidInput(f"{path} is neither a folder nor a ZIP file") from e
            self.names = {PurePosixPath(i.filename).as_posix(): i for i in self.zip.infolist() if not i.is_dir()}
        elif path.is_dir():
            self.names = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if p.is_file()}
        else:
            raise NotFound(f"no export at {path}")

    def find(self, name: str) -> str | None:
        """The stored path whose file name is ``name`` (an export may sit in a folder of its own)."""
        hits = sorted((n for n in self.names if PurePosixPath(n).name.lower() == name.lower()), key=len)
        return hits[0] if hits else None

    def read(self, name: str) -> bytes | None:
        entry = self.names.get(name)
        if entry is None:
            return None
        size = entry.file_size if isinstance(entry, zipfile.ZipInfo) else entry.stat().st_size
        if size > MAX_FILE_BYTES:
            log.warning("skipping %s in the export: %d bytes is too large", name, size)
            return None
        if self.zip is not None:
            return self.zip.read(entry)
        return entry.read_bytes()

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _text(data: bytes) -> str:
    return data.decode("utf-8-sig", errors="replace")


# -- Substack ----------------------------------------------------------------------------------


def read_substack_export(path: Path) -> ExportRead:
    """A writer's export (ZIP or folder): their published posts, with the pictures their bodies show.

    Drafts are skipped; paid posts are kept and marked (``data.paywalled``). A post whose HTML file is
    missing keeps its title and subtitle.
    """
    files = _Files(Path(path))
    try:
        name = files.find("posts.csv")
        data = files.read(name) if name else None
        if data is None:
            raise InvalidInput(f"{path} holds no posts.csv: is it a Substack export?")
        folder = PurePosixPath(name).parent
        read = ExportRead("substack-export")
        node = "substack:user:export"
        read.records.append(Record(node, "substack", "user", 0, title="your Substack export",
                                   data={"imported": "substack-export"}))
        try:
            for row in csv.DictReader(io.StringIO(_text(data).replace("\0", ""))):
                row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
                record = _substack_post(row, files, folder, node, read.skipped)
                if record is not None:
                    read.records.append(record)
        except csv.Error as e:
            raise InvalidInput(f"{path}: posts.csv cannot be read as CSV ({e})") from e
        return read
    finally:
        files.close()


def _substack_post(row: dict[str, str], files: _Files, folder: PurePosixPath, node: str,
                   skipped: Counter[str]) -> Record | None:
    post_key = row.get("post_id", "")
    number, _, slug = post_key.partition(".")
    post_id = numeric_id(number)
    if post_id is None:
        skipped["rows without a post_id, skipped"] += 1
        return None
    if row.get("is_published", "").lower() not in TRUE:
        skipped["drafts, skipped"] += 1
        return None
    body = files.read((folder / "posts" / f"{post_key}.html").as_posix()) if "/" not in post_key else None
    body_text, figures = read_body(_text(body)) if body else (None, [])
    if body is None:
        skipped["posts without their HTML file, kept by title"] += 1
    audience = row.get("audience") or None
    subtitle = row.get("subtitle") or None
    images = [ImageRef(url, "body", alt, caption, position=i + 1, context=context)
              for i, (url, alt, caption, context) in enumerate(figures)]
    return Record(
        f"substack:post:{post_id}", "substack", "post", 1, via=(node, "exported"), title=row.get("title") or None,
        text=join_lines(subtitle, body_text), published_at=row.get("post_date") or None, images=images,
        data={"id": post_id, "slug": slug or None, "subtitle": subtitle, "audience": audience,
              "type": row.get("type") or None, "paywalled": audience in PAID if audience else None,
              "imported": "substack-export"},
    )


# -- Pinterest ---------------------------------------------------------------------------------


def pinimg_url(base: str, value: str) -> str | None:
    """A picture named by an export: its URL as given, or a hash made into ``{base}/736x/aa/bb/cc/h.jpg``."""
    value = value.strip()
    if is_web_url(value):
        return value
    stem = value.rsplit(".", 1)[0].lower()
    if not HASH.fullmatch(stem):
        return None
    return f"{base.rstrip('/')}/736x/{stem[0:2]}/{stem[2:4]}/{stem[4:6]}/{stem}.jpg"


def _fields(chunk: str) -> dict[str, str | None]:
    """The ``Key: value`` lines of one pin's block; ``No data`` and empty values read as None."""
    chunk = re.sub(r'<a\s[^>]*href="([^"]*)"[^>]*>.*?</a>', r"\1", chunk, flags=re.IGNORECASE | re.DOTALL)
    chunk = re.sub(r"<br\s*/?>", "\n", chunk, flags=re.IGNORECASE)
    chunk = html.unescape(re.sub(r"<[^>]+>", "", chunk))
    found: dict[str, str | None] = {}
    for line in chunk.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep or not key or len(key) > 40 or key == "ip address":  # an IP address is never kept
            continue
        value = value.strip().rstrip(",").strip()
        found[key] = None if not value or value.lower() == "no data" else value
    return found


def _story_images(value: str | None) -> list[str]:
    """The ``image`` values of a Python-style list such as ``[{'image': 'abc...'}]``."""
    if not value or len(value) > 100_000:
        return []
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    entries = parsed if isinstance(parsed, list) else [parsed]
    return [e["image"] for e in entries if isinstance(e, dict) and isinstance(e.get("image"), str)]


def _export_date(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y/%m/%d %H:%M:%S").isoformat()
    except ValueError:
        return value


def read_pinterest_export(path: Path, pinimg_base: str) -> ExportRead:
    """Pinterest's "Request your data" HTML file (or a ZIP or folder holding it): the person's pins and
    the boards they sit on; each pin's picture becomes a URL under ``pinimg_base``."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"{path} is too large to be a Pinterest export")
        page = _text(path.read_bytes())
    else:
        files = _Files(path)
        try:
            names = [n for n in files.names if n.lower().endswith((".html", ".htm"))]
            pages = [_text(files.read(n) or b"") for n in sorted(names)]
        finally:
            files.close()
        page = next((p for p in pages if re.search(r"<h1[^>]*>\s*Pins\s*</h1>", p, re.IGNORECASE)), "")
    match = re.search(r"<h1[^>]*>\s*Pins\s*</h1>(.*?)(?=<h1[^>]*>|\Z)", page, re.IGNORECASE | re.DOTALL)
    if match is None:
        raise InvalidInput(f"{path} has no Pins section: is it Pinterest's data export (an HTML file)?")
    section = match.group(1)
    read = ExportRead("pinterest-export")
    anchors = list(PIN_LINK.finditer(section))
    users: dict[str, str] = {}
    boards: dict[str, Record] = {}
    for k, anchor in enumerate(anchors):
        end = anchors[k + 1].start() if k + 1 < len(anchors) else len(section)
        fields = _fields(section[anchor.end():end])
        username = fields.get("username") or "export"
        username = username if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", username) else "export"
        user = users.setdefault(username, f"pinterest:user:{username}")
        record = _pin(anchor.group(1), fields, user, boards, pinimg_base)
        if record is None:
            read.skipped["pins without a picture, skipped"] += 1
            continue
        read.records.append(record)
    read.records[:0] = [Record(node, "pinterest", "user", 0, title=name, data={"username": name,
                                                                                 "imported": "pinterest-export"})
                        for name, node in users.items()] + list(boards.values())
    return read


def _pin(pin_id: str, fields: dict[str, str | None], user: str, boards: dict[str, Record],
         pinimg_base: str) -> Record | None:
    pictures = [pinimg_url(pinimg_base, fields.get("image") or "")]
    pictures += [pinimg_url(pinimg_base, h) for h in _story_images(fields.get("story pin media"))]
    urls = list(dict.fromkeys(u for u in pictures if u))
    if not urls:
        return None
    board_id = fields.get("board id")
    via = (user, "pinned")
    if board_id and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", board_id):
        board = f"pinterest:board:{board_id}"
        boards.setdefault(board_id, Record(board, "pinterest", "board", 1, via=(user, "owns"),
                                           title=fields.get("board name"),
                                           data={"id": board_id, "name": fields.get("board name"),
                                                 "imported": "pinterest-export"}))
        via = (board, "contains")
    alt = fields.get("alt text")
    images = [ImageRef(url, "pin" if i == 0 else "story", alt if i == 0 else None, position=i)
              for i, url in enumerate(urls)]
    return Record(
        f"pinterest:pin:{pin_id}", "pinterest", "pin", 1, via=via, title=fields.get("title"),
        text=join_lines(fields.get("details")), published_at=_export_date(fields.get("created at")), images=images,
        data={"id": pin_id, "link": fields.get("canonical link"), "pinner": user.rsplit(":", 1)[1],
              "board": {"id": board_id, "name": fields.get("board name")} if board_id else None,
              "video": (fields.get("is video") or "").lower() in TRUE, "imported": "pinterest-export"},
    )


# -- a folder of pictures ----------------------------------------------------------------------

PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
NAME_KEYS = ("file", "filename", "file_name", "image", "name", "path")
CAPTION_KEYS = ("caption", "text", "description", "alt", "title")


def _captions(folder: Path) -> dict[str, str]:
    """File name -> caption from ``captions.csv`` and ``captions.jsonl`` (either, both or neither)."""
    import json

    found: dict[str, str] = {}
    rows: list[dict[str, object]] = []
    table = folder / "captions.csv"
    if table.is_file() and table.stat().st_size <= MAX_FILE_BYTES:
        try:
            rows += [{(k or "").strip().lower(): v for k, v in row.items()}
                     for row in csv.DictReader(io.StringIO(_text(table.read_bytes()).replace("\0", "")))]
        except csv.Error as e:
            log.warning("skipping %s: not readable as CSV (%s)", table, e)
    lines = folder / "captions.jsonl"
    if lines.is_file() and lines.stat().st_size <= MAX_FILE_BYTES:
        for line in _text(lines.read_bytes()).splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append({str(k).lower(): v for k, v in row.items()})
    for row in rows:
        name = next((row[k] for k in NAME_KEYS if isinstance(row.get(k), str) and row[k]), None)
        caption = next((row[k] for k in CAPTION_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
        if name and caption:
            found[PurePosixPath(str(name).replace("\\", "/")).name] = caption.strip()
    return found


def read_folder(folder: Path, owner: str) -> tuple[ExportRead, dict[str, Path]]:
    """Pictures in ``folder`` (not its subfolders) with their captions: a same-name ``.txt`` beside a
    picture wins over ``captions.csv`` / ``captions.jsonl``. Returns the records (one per picture,
    keyed by the file's content so a second import adds nothing) and each picture's file by its URI."""
    import hashlib

    folder = Path(folder)
    if not folder.is_dir():
        raise NotFound(f"no folder {folder}")
    captions = _captions(folder)
    node = f"folder:user:{owner}"
    read = ExportRead("folder")
    read.records.append(Record(node, "folder", "user", 0, title=f"{owner}'s pictures", data={"imported": "folder"}))
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in PICTURE_SUFFIXES:
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            read.skipped["pictures too large, skipped"] += 1
            continue
        side = path.with_suffix(".txt")
        caption = _text(side.read_bytes()).strip() if side.is_file() and side.stat().st_size < 100_000 else None
        caption = caption or captions.get(path.name)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        uri = path.resolve().as_uri()
        files[uri] = path
        title = re.sub(r"[_-]+", " ", path.stem).strip() or None
        read.records.append(Record(
            f"folder:picture:{digest[:32]}", "folder", "picture", 1, via=(node, "exported"), title=title,
            text=join_lines(caption), images=[ImageRef(uri, "body", None, join_lines(caption), position=0)],
            data={"file": path.name, "imported": "folder"},
        ))
    return read, files
