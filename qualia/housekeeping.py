"""Housekeeping of a profile's folders: what interrupted writes left behind, and versions no one needs.

Debris: what ``workspace.debris`` finds, temporaries of atomic writes whose writer is gone; a write in
progress is never touched.

Versions: the newest ``keep`` adapter and index versions stay, and so does every adapter an index
that stays was built with (the service serves it), and the newest index that still reads (a damaged
newest one must not take the last good one with it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qualia import workspace
from qualia.errors import CorruptArtifact, InvalidArgument, NotFound

log = logging.getLogger(__name__)

DEFAULT_KEEP = 3


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _remove(path: Path, why: str, root: Path) -> dict[str, Any]:
    size = _size(path)
    workspace.remove(path)
    log.info("removed %s (%s, %d bytes)", path, why, size)
    return {"path": str(path.relative_to(root)), "why": why, "bytes": size}


def sweep(parent: Path, root: Path) -> list[dict[str, Any]]:
    """Remove the debris under ``parent``; what was removed."""
    return [_remove(path, "left by an interrupted write", root) for path in workspace.debris(parent)]


def _adapters_of_indexes(indexes: Path, versions: list[str]) -> dict[str, str | None]:
    """index version -> the adapter version it was built with, for the versions whose manifest reads."""
    from qualia.index import read_manifest  # faiss: only when versions are weighed

    found = {}
    for version in versions:
        try:
            found[version] = read_manifest(indexes / version).get("adapter_version")
        except CorruptArtifact:
            continue
    return found


def collect(ws: workspace.Workspace, profile: str, keep: int = DEFAULT_KEEP) -> dict[str, Any]:
    """Remove ``profile``'s debris and the versions beyond the newest ``keep`` that nothing needs.

    Returns ``{"profile", "keep", "removed": [{"path", "why", "bytes"}], "freed_bytes"}``.
    """
    if keep < 1:
        raise InvalidArgument(f"keep must be at least 1, not {keep}")
    adapters, indexes = ws.adapters_dir(profile), ws.index_dir(profile)
    if not ws.profile_dir(profile).is_dir():
        raise NotFound(f"no profile {profile!r} in {ws.root}")
    removed = sweep(adapters, ws.root) + sweep(indexes, ws.root)

    index_versions = workspace.versions(indexes)
    adapter_of = _adapters_of_indexes(indexes, index_versions)
    kept_indexes = set(index_versions[-keep:]) | set(sorted(adapter_of)[-1:])  # and the newest that reads
    needed_adapters = {adapter_of[v] for v in kept_indexes if adapter_of.get(v)}
    for version in index_versions:
        if version not in kept_indexes:
            removed.append(_remove(indexes / version, f"index version beyond the newest {keep}", ws.root))

    adapter_versions = workspace.versions(adapters)
    kept_adapters = set(adapter_versions[-keep:]) | needed_adapters
    for version in adapter_versions:
        if version not in kept_adapters:
            removed.append(_remove(adapters / version, f"adapter version beyond the newest {keep}, in no kept index",
                                   ws.root))
    return {"profile": profile, "keep": keep, "removed": removed, "freed_bytes": sum(r["bytes"] for r in removed)}
