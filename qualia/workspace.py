"""Where everything lives on disk, and how it is written.

Layout (see README): ``<root>/profiles/<profile>/{corpus.sqlite,adapters/<ver>/,index/<ver>/}``
and ``<root>/images/<aa>/<sha256>.<ext>``. Every artifact is written atomically so a reader
(or a process killed with -9 mid-write) never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from qualia.errors import CorruptArtifact, InvalidProfileName, MissingStep, NoIndex, NotFound

log = logging.getLogger(__name__)
T = TypeVar("T")

PROFILE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Version folders are UTC timestamps, so "newest" is also "sorts last".
VERSION_NAME = re.compile(r"\d{8}T\d{6}(\d{6})?Z")
DEFAULT_ROOT = Path("~/.qualia")
# A temporary of an atomic write: ".<name>+<host>+<pid>+<random>.tmp", so a later write can tell a dead
# writer's debris from a write in progress.
TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+?)\+(?P<host>[^+]*)\+(?P<pid>\d+)\+[^/]*\.tmp$")
DEBRIS_AGE_S = 24 * 3600  # any temporary this old is debris, whoever wrote it

# The artifacts of a profile in the order the commands make them, with the command that makes each.
STEPS = (
    ("corpus", "`qualia crawl {profile} --substack HANDLE` (or --pinterest USER)"),
    ("adapter", "`qualia train {profile}`"),
    ("index", "`qualia index {profile}`"),
)


def check_profile_name(name: str) -> str:
    if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name):
        shown = name[:80] if isinstance(name, str) else type(name).__name__
        raise InvalidProfileName(
            f"invalid profile name {shown!r}: use 1-64 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Workspace:
    """Where one qualia installation keeps everything: built once by the caller, passed down.

    The command line builds it from ``QUALIA_HOME``, the service from its settings; nothing below
    them reads the environment. Every method that takes a profile checks its name first.
    """

    root: Path

    @classmethod
    def at(cls, root: str | Path | None = None) -> Workspace:
        """The workspace at ``root`` (``~/.qualia`` when None or empty)."""
        return cls(Path(root or DEFAULT_ROOT).expanduser())

    @property
    def profiles_dir(self) -> Path:
        return self.root / "profiles"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def trunk_cache_dir(self) -> Path:
        """Frozen image-tower activations, shared by every profile (``qualia.trunk_cache``)."""
        return self.root / "cache" / "trunks"

    def profile_dir(self, profile: str) -> Path:
        return self.profiles_dir / check_profile_name(profile)

    def corpus_path(self, profile: str) -> Path:
        return self.profile_dir(profile) / "corpus.sqlite"

    def adapters_dir(self, profile: str) -> Path:
        return self.profile_dir(profile) / "adapters"

    def index_dir(self, profile: str) -> Path:
        return self.profile_dir(profile) / "index"

    def crawl_job_dir(self, profile: str) -> Path:
        return self.profile_dir(profile) / "crawl_job"

    def list_profiles(self) -> list[str]:
        if not self.profiles_dir.is_dir():
            return []
        return sorted(p.name for p in self.profiles_dir.iterdir() if p.is_dir() and PROFILE_NAME.fullmatch(p.name))

    def latest_adapter(self, profile: str) -> Path | None:
        """The newest complete adapter folder of ``profile``, or None."""
        return _latest(self.adapters_dir(profile))

    def latest_index(self, profile: str) -> Path | None:
        """The newest complete index folder of ``profile``, or None."""
        return _latest(self.index_dir(profile))

    def adapter(self, profile: str, version: str | None = None) -> Path:
        """The folder of adapter ``version`` (None: the newest); MissingStep / NotFound otherwise."""
        if version is None:
            self.require(profile, "adapter")
        return resolve_version(self.adapters_dir(profile), version, f"adapter of {profile!r}")

    def index(self, profile: str, version: str | None = None) -> Path:
        """The folder of index ``version`` (None: the newest); NoIndex otherwise."""
        if version is None:
            self.require(profile, "index")
        try:
            return resolve_version(self.index_dir(profile), version, f"index of {profile!r}")
        except NotFound as e:
            raise NoIndex(str(e)) from e

    def require(self, profile: str, artifact: str) -> None:
        """Nothing if ``profile`` has ``artifact`` ("corpus", "adapter" or "index"); else MissingStep
        naming, once, every command still to run, so a new user learns the whole chain in one try."""
        names = [name for name, _ in STEPS]
        wanted = names.index(artifact)
        have = {
            "corpus": lambda: self.corpus_path(profile).is_file(),
            "adapter": lambda: self.latest_adapter(profile) is not None,
            "index": lambda: self.latest_index(profile) is not None,
        }
        if have[artifact]():
            return
        first = next((i for i in range(wanted) if not have[names[i]]()), wanted)
        chain = ", then ".join(command.format(profile=profile) for _, command in STEPS[first : wanted + 1])
        if not self.profile_dir(profile).is_dir():
            what = f"no profile {profile!r} in {self.root}"
        else:
            what = f"profile {profile!r} has no {names[first]} yet"
        error = NoIndex if artifact == "index" else MissingStep
        raise error(f"{what}: run {chain}")


def newest_usable(parent: Path, open_version: Callable[[Path], T], what: str) -> tuple[Path, T]:
    """The newest version under ``parent`` that ``open_version`` accepts, and what it returned.

    A version it refuses as damaged (``CorruptArtifact``: a cut file, an empty folder) is skipped and
    logged, so a damaged newest version never hides the complete ones before it.
    """
    skipped: list[str] = []
    newest_damage = ""
    for version in reversed(versions(parent)):
        try:
            opened = open_version(parent / version)
        except CorruptArtifact as e:
            log.warning("%s %s is damaged, skipped: %s", what, version, e)
            skipped.append(version)
            newest_damage = newest_damage or str(e)
            continue
        if skipped:
            log.warning("using %s %s: the newer %s damaged", what, version, ", ".join(skipped)
                        + (" is" if len(skipped) == 1 else " are"))
        return parent / version, opened
    if skipped:
        older = f" and {len(skipped) - 1} older" if len(skipped) > 1 else ""
        raise CorruptArtifact(f"every {what} is damaged ({skipped[0]}{older}; {newest_damage}): build it again")
    raise NotFound(f"no {what} yet")


def _latest(parent: Path) -> Path | None:
    version = latest_version(parent)
    return parent / version if version else None


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


def resolve_version(parent: Path, version: str | None, what: str = "version") -> Path:
    """The folder of ``version`` (or of the newest one) under ``parent``; NotFound if there is none."""
    if version is None:
        version = latest_version(parent)
        if version is None:
            raise NotFound(f"no {what} yet")
    if not isinstance(version, str) or not VERSION_NAME.fullmatch(version) or not (parent / version).is_dir():
        known = versions(parent)
        hint = f" (there are {len(known)}, newest {known[-1]})" if known else ""
        raise NotFound(f"no {what} version {str(version)[:40]!r}{hint}")
    return parent / version


def _temporary_prefix(name: str) -> str:
    return f".{name}+{socket.gethostname()}+{os.getpid()}+"


def _writer_gone(path: Path, now: float) -> bool:
    try:
        age = now - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if age > DEBRIS_AGE_S:
        return True
    match = TEMPORARY_NAME.match(path.name)
    if match is None or match["host"] != socket.gethostname():
        return False  # another host's write (a shared workspace), or a name that does not say
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def debris(parent: Path) -> list[Path]:
    """Temporaries of interrupted atomic writes directly under ``parent`` whose writer is gone."""
    if not parent.is_dir():
        return []
    now = time.time()
    return sorted(p for p in parent.iterdir()
                  if p.name.startswith(".") and p.name.endswith(".tmp") and _writer_gone(p, now))


def remove(path: Path) -> None:
    """Remove a file or a whole folder (a link itself, never what it points to); gone already is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_debris(parent: Path) -> list[Path]:
    """Remove ``debris(parent)``; what was removed."""
    gone = debris(parent)
    for path in gone:
        remove(path)
        log.info("removed %s, left by an interrupted write", path)
    return gone


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path.name), suffix=".tmp", dir=path.parent)
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
    remove_debris(final.parent)  # what a killed write of an earlier version left behind
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(final.name), suffix=".tmp", dir=final.parent))
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
