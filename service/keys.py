"""API keys, each scoped to one profile, in the workspace's ``keys.sqlite`` (SQLite, WAL).

The service's concern: the service checks them, and the command line's ``qualia keys`` manages them.

A key is ``qk_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored, with a short
public prefix (the key's first characters) to list and revoke it by. A random 256-bit token cannot be
guessed or brute-forced from its hash, so a fast hash is enough here; slow hashes (bcrypt, scrypt)
exist to protect low-entropy passwords.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from qualia import workspace
from qualia.errors import QualiaError, Unavailable

log = logging.getLogger(__name__)

KEYS_FILE = "keys.sqlite"
KEY_MARK = "qk_"
PREFIX_LEN = len(KEY_MARK) + 8  # "qk_" and 48 public bits: enough to tell keys apart in a listing

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    prefix TEXT PRIMARY KEY,
    sha256 BLOB NOT NULL,
    profile TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


def keys_path(ws: workspace.Workspace) -> Path:
    return ws.root / KEYS_FILE


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@contextlib.contextmanager
def _open(ws: workspace.Workspace, create: bool = False) -> Iterator[sqlite3.Connection | None]:
    """A connection to the key store; ``None`` when it does not exist and ``create`` is off (readers never create it).

    A store SQLite cannot read (damaged, emptied, not a database) is ``Unavailable``, never a guess.
    """
    path = keys_path(ws)
    if not create and not path.exists():
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "rwc" if create else "rw"
    db = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=10)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        if create:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            with contextlib.suppress(OSError):
                os.chmod(path, 0o600)
        yield db
    except sqlite3.DatabaseError as e:
        raise Unavailable(f"the API key store ({KEYS_FILE}) cannot be read: {str(e)[:200]}; "
                          "requests are refused until an operator repairs or replaces it") from e
    finally:
        db.close()


def create_key(ws: workspace.Workspace, profile: str) -> str:
    """A new key for ``profile``; the caller shows it once, since only its hash is kept."""
    workspace.check_profile_name(profile)
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with _open(ws, create=True) as db:
        for _ in range(8):  # a prefix collision (48 random bits) is all but impossible; retry anyway
            key = KEY_MARK + secrets.token_urlsafe(32)
            try:
                with db:
                    db.execute(
                        "INSERT INTO api_keys (prefix, sha256, profile, created_at) VALUES (?, ?, ?, ?)",
                        (public_prefix(key), _digest(key), profile, created_at),
                    )
                return key
            except sqlite3.IntegrityError:
                continue
    raise QualiaError("could not find an unused key prefix")


def public_prefix(key: str) -> str:
    """What may be shown and stored of a key to say whose it is: its prefix, as ``qualia keys list`` shows it."""
    return key[:PREFIX_LEN]


def _match(key: Any, rows: dict[str, tuple[bytes, str]]) -> str | None:
    if not isinstance(key, str) or not key.startswith(KEY_MARK) or len(key) <= PREFIX_LEN:
        return None
    found = rows.get(key[:PREFIX_LEN])
    if found is None:
        return None
    digest, profile = found
    return profile if hmac.compare_digest(_digest(key), digest) else None


def _load(db: sqlite3.Connection | None) -> dict[str, tuple[bytes, str]]:
    if db is None:
        return {}
    return {prefix: (bytes(digest), profile) for prefix, digest, profile in db.execute(
        "SELECT prefix, sha256, profile FROM api_keys")}


def list_keys(ws: workspace.Workspace) -> list[dict[str, str]]:
    """Keys as ``{"prefix", "profile", "created_at"}``, oldest first; never the keys themselves."""
    with _open(ws) as db:
        if db is None:
            return []
        rows = db.execute("SELECT prefix, profile, created_at FROM api_keys ORDER BY created_at, rowid").fetchall()
    return [{"prefix": p, "profile": profile, "created_at": c} for p, profile, c in rows]


def revoke_key(ws: workspace.Workspace, prefix: str) -> bool:
    """Delete the key listed under ``prefix`` (or a whole key); False when there is none."""
    with _open(ws) as db:
        if db is None:
            return False
        with db:
            gone = db.execute("DELETE FROM api_keys WHERE prefix=?", (prefix[:PREFIX_LEN],)).rowcount
    return gone > 0


class KeyRing:
    """The key store as a long-running server sees it: held in memory, reloaded when the files change.

    Two ``stat`` calls a request; keys created or revoked while the server runs count on the next request.
    The WAL file is watched too, since a commit may reach only it until the next checkpoint.
    """

    def __init__(self, ws: workspace.Workspace):
        self.path = keys_path(ws)
        self._files = (str(self.path), str(self.path) + "-wal")  # stat'ed at every request: strings, not paths
        self._ws = ws
        self._signature: tuple | None = None
        self._rows: dict[str, tuple[bytes, str]] = {}
        self._damage: Unavailable | None = None  # why the store at ``_signature`` cannot be read
        self._lock = threading.Lock()

    def _stat(self) -> tuple:
        out = []
        for path in self._files:
            try:
                st = os.stat(path)
                out.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def _current(self) -> dict[str, tuple[bytes, str]]:
        """The keys as stored now; Unavailable while the store cannot be read (fail closed, logged once)."""
        signature = self._stat()
        if signature != self._signature:
            with self._lock:
                if signature != self._signature:
                    try:
                        with _open(self._ws) as db:
                            self._rows, self._damage = _load(db), None
                    except Unavailable as e:
                        self._rows, self._damage = {}, e
                        log.error("%s (%s); every /v1 request answers 503", e, self.path)
                    self._signature = signature
        if self._damage is not None:
            raise Unavailable(str(self._damage))
        return self._rows

    def configured(self) -> bool:
        return bool(self._current())

    def profile_of(self, key: str | None) -> str | None:
        return _match(key, self._current())
