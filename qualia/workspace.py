"""Where everything lives on disk, and how it is written.

Layout (see README): ``$QUALIA_HOME/profiles/<profile>/{corpus.sqlite,adapters/<ver>/,index/<ver>/}``
and ``$QUALIA_HOME/images/<aa>/<sha256>.<ext>``. Every artifact is written atomically so a reader
(or a process killed with -9 mid-write) never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Version folders are UTC timestamps, so "newest" is also "sorts last".
VERSION_NAME = re.compile(r"\d{8}T\d{6}(\d{6})?Z")


class InvalidProfileName(ValueError):
    pass


def home() -> Path:
    return Path(os.environ.get("QUALIA_HOME") or Path.home() / ".qualia").expanduser()


def check_profile_name(name: str) -> str:
    if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name):
        raise InvalidProfileName(
            f"invalid profile name {name!r}: use 1-64 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def profiles_dir(root: Path | None = None) -> Path:
    return (root or home()) / "profiles"


def profile_dir(profile: str, root: Path | None = None) -> Path:
    return profiles_dir(root) / check_profile_name(profile)


def corpus_path(profile: str, root: Path | None = None) -> Path:
    return profile_dir(profile, root) / "corpus.sqlite"


def images_dir(root: Path | None = None) -> Path:
    return (root or home()) / "images"


def list_profiles(root: Path | None = None) -> list[str]:
    base = profiles_dir(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and PROFILE_NAME.fullmatch(p.name))


def new_version() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def versions(parent: Path) -> list[str]:
    """Complete versions under ``parent``, oldest first (temporary folders are never listed)."""
    if not parent.is_dir():
        return []
    return sorted(p.name for p in parent.iterdir() if p.is_dir() and VERSION_NAME.fullmatch(p.name))


def latest_version(parent: Path) -> str | None:
    found = versions(parent)
    return found[-1] if found else None


def resolve_version(parent: Path, version: str | None) -> Path:
    """The folder of ``version`` (or of the newest one) under ``parent``; FileNotFoundError if none."""
    if version is None:
        version = latest_version(parent)
        if version is None:
            raise FileNotFoundError(f"no versions under {parent}")
    if not VERSION_NAME.fullmatch(version) or not (parent / version).is_dir():
        raise FileNotFoundError(f"no version {version!r} under {parent}")
    return parent / version


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success fsync its files and rename it to ``final``.

    The temporary name starts with '.', which ``versions`` never lists, so a crash leaves only
    debris that no reader picks up.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
