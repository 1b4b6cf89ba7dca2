"""Heavy, shared state of a running service: one backbone per (name, weights), one searcher per profile.

A profile's searcher is keyed by its newest complete index version: an index built after startup is
picked up on the next request, and the old version is dropped from memory.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from qualia.errors import NoIndex
from qualia.index import ProfileIndex, read_manifest
from qualia.search import BackboneCache, ProfileSearcher
from qualia.workspace import Workspace


log = logging.getLogger(__name__)


class Resources:
    def __init__(self, ws: Workspace, device: str = "cpu"):
        self.ws = ws
        self.backbones = BackboneCache(device)
        self._searchers: dict[str, ProfileSearcher] = {}
        self._indexes: dict[str, ProfileIndex] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, profile: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(profile, threading.Lock())

    def latest_index_folder(self, profile: str) -> Path:
        folder = self.ws.latest_index(profile)
        if folder is None:
            raise NoIndex(f"profile {profile!r} has no index yet")
        return folder

    def preload(self) -> None:
        """Load the backbone of every profile's newest index, so the first query is fast."""
        for profile in self.ws.list_profiles():
            folder = self.ws.latest_index(profile)
            if folder is None:
                continue
            try:
                manifest = read_manifest(folder)
                self.backbones.get(manifest["backbone"], manifest.get("pretrained"))
            except Exception as e:  # one broken profile must not stop the service
                log.warning("could not preload the backbone of %s index %s: %s", profile, folder.name, e)

    def index(self, profile: str) -> ProfileIndex:
        """The profile's newest index (rows and vectors, no encoder)."""
        folder = self.latest_index_folder(profile)
        searcher = self._searchers.get(profile)
        if searcher is not None and searcher.index_version == folder.name:
            return searcher.index
        cached = self._indexes.get(profile)
        if cached is not None and cached.version == folder.name:
            return cached
        with self._lock(profile):
            cached = self._indexes.get(profile)
            if cached is None or cached.version != folder.name:
                cached = self._indexes[profile] = ProfileIndex.load(folder)
            return cached

    def searcher(self, profile: str) -> ProfileSearcher:
        """The profile's newest index with the encoder it was built with."""
        folder = self.latest_index_folder(profile)
        cached = self._searchers.get(profile)
        if cached is not None and cached.index_version == folder.name:
            return cached
        with self._lock(profile):
            cached = self._searchers.get(profile)
            if cached is None or cached.index_version != folder.name:
                cached = ProfileSearcher.from_folder(self.ws, profile, folder, backbones=self.backbones)
                self._searchers[profile] = cached
                self._indexes.pop(profile, None)
            return cached
