"""Heavy, shared state of a running service: one backbone per (name, weights), every profile's adapter
unmerged over it (``LowRankCache``, within a byte budget), one searcher per profile, one encoding thread.

A profile's searcher is keyed by its newest index version on disk: an index built after startup is
picked up on the next request, and the old version is dropped from memory. A damaged newest version is
passed over for the newest usable one (``workspace.newest_usable``), which answers until a newer arrives.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from typing import TYPE_CHECKING

from qualia.adapter_bank import LowRankCache
from qualia.errors import NoIndex, QualiaError
from qualia.index import ProfileIndex, read_manifest
from qualia.search import BackboneCache, ProfileSearcher
from qualia.workspace import Workspace, newest_usable

from service.engine import EncoderWorker

if TYPE_CHECKING:
    from qualia.embed import Encoder


log = logging.getLogger(__name__)

RACY_NS = 2_000_000_000  # a folder changed this recently may change again within its mtime's tick


class Resources:
    def __init__(self, ws: Workspace, device: str = "cpu", concurrent_images: int = 2,
                 adapter_budget_bytes: int = 256 * 1024 * 1024, torch_threads: int = 1, max_batch: int = 32,
                 batch_torch_threads: int = 0):  # fmt: skip
        self.ws = ws
        self.backbones = BackboneCache(device)
        self.adapters = LowRankCache(adapter_budget_bytes)
        self.worker = EncoderWorker(max_batch=max_batch, torch_threads=torch_threads, batch_threads=batch_torch_threads)
        # Decoding and embedding a query picture costs memory in proportion to its pixels: a few at a time,
        # on threads of their own (the allocator keeps an arena per thread: pictures decoded across the
        # whole request pool would each leave one grown to a picture's size).
        self.picture_pool = ThreadPoolExecutor(max_workers=concurrent_images, thread_name_prefix="picture")
        # profile -> (its newest version on disk when loaded, what was loaded: that one or an older usable one)
        self._searchers: dict[str, tuple[str, ProfileSearcher]] = {}
        self._indexes: dict[str, tuple[str, ProfileIndex]] = {}
        self._newest: dict[str, tuple[tuple[int, int], str]] = {}  # profile -> (index folder's inode and mtime, newest)
        self._index_dirs: dict[str, str] = {}  # profile -> its index folder, stat'ed at every request
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def start(self) -> None:
        self.worker.start()

    def close(self) -> None:
        self.worker.stop()
        self.picture_pool.shutdown(wait=False, cancel_futures=True)

    def _lock(self, profile: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(profile, threading.Lock())

    def newest_version(self, profile: str) -> str:
        """The name of the profile's newest index version on disk (the cache key: a new one means reload).

        Listing the folder stats every version in it, at every request; a version lands by a rename into
        the folder, which changes the folder's mtime, so one ``stat`` says whether the last listing still
        holds. The kernel stamps mtimes from a coarse clock: a listing made within ``RACY_NS`` of the
        folder's last change is not trusted, since a change in the same tick would leave the stamp as it was.
        """
        folder = self._index_dirs.get(profile)
        if folder is None:
            folder = self._index_dirs[profile] = str(self.ws.index_dir(profile))
        try:
            st = os.stat(folder)
            stamp = (st.st_ino, st.st_mtime_ns)
        except OSError:
            stamp = None
        known = self._newest.get(profile)
        if known is not None and stamp is not None and known[0] == stamp:
            return known[1]
        latest = self.ws.latest_index(profile)
        if latest is None:
            raise NoIndex(f"profile {profile!r} has no index yet")
        if stamp is not None and time.time_ns() - stamp[1] > RACY_NS:
            self._newest[profile] = (stamp, latest.name)
        return latest.name

    def preload(self) -> None:
        """Load the backbone of every profile's newest usable index, so the first query is fast."""
        for profile in self.ws.list_profiles():
            if self.ws.latest_index(profile) is None:
                continue
            try:
                _, manifest = newest_usable(self.ws.index_dir(profile), read_manifest, f"index of {profile!r}")
                self.backbones.get(manifest["backbone"], manifest.get("pretrained"))
            except Exception as e:  # one broken profile must not stop the service
                log.warning("could not preload the backbone of %s's index: %s", profile, e)

    def index(self, profile: str) -> ProfileIndex:
        """The profile's newest usable index (rows and vectors, no encoder)."""
        newest = self.newest_version(profile)
        cached = self._searchers.get(profile)
        if cached is not None and cached[0] == newest:
            return cached[1].index
        known = self._indexes.get(profile)
        if known is not None and known[0] == newest:
            return known[1]
        with self._lock(profile):
            known = self._indexes.get(profile)
            if known is None or known[0] != newest:
                _, index = newest_usable(self.ws.index_dir(profile), ProfileIndex.load, f"index of {profile!r}")
                known = self._indexes[profile] = (newest, index)
            return known[1]

    def searcher(self, profile: str) -> ProfileSearcher:
        """The profile's newest usable index with the encoder it was built with. Kept until a newer
        version appears, so a damaged newest version is passed over once, not at every request."""
        newest = self.newest_version(profile)
        cached = self._searchers.get(profile)
        if cached is not None and cached[0] == newest:
            return cached[1]
        with self._lock(profile):
            cached = self._searchers.get(profile)
            if cached is None or cached[0] != newest:
                cached = (newest, ProfileSearcher.load(self.ws, profile, backbones=self.backbones, adapters=self.adapters))
                self._searchers[profile] = cached
                self._indexes.pop(profile, None)
            return cached[1]

    def current_searcher(self, profile: str) -> ProfileSearcher | None:
        """The searcher in memory if it is of the newest index version, else None (``searcher`` loads).
        A listing of the index folder and no reading: cheap enough for the event loop, which saves a
        request its hop to a worker thread."""
        cached = self._searchers.get(profile)
        if cached is None:
            return None
        try:
            return cached[1] if cached[0] == self.newest_version(profile) else None
        except QualiaError:
            return None

    def searcher_and_encoder(self, profile: str) -> tuple[ProfileSearcher, Encoder]:
        """The profile's searcher and its encoder (reading the adapter again if the cache let it go)."""
        searcher = self.searcher(profile)
        return searcher, searcher.encoder

    def loaded_indexes(self) -> dict[str, ProfileIndex]:
        """profile -> the index version held in memory now (what ``/metrics`` reports)."""
        held = {profile: index for profile, (_, index) in list(self._indexes.items())}
        held.update({profile: searcher.index for profile, (_, searcher) in list(self._searchers.items())})
        return held
