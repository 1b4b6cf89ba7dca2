"""Query side, shared by the CLI and the service: a profile's index plus the exact encoder it was built with.

An index is only meaningful with the backbone weights and adapter that embedded it, so loading refuses
any other pairing (IndexMismatch) instead of returning scores from a different space. A query text is
cleaned and cut as the text policy says (``qualia.text``), like everything the index embedded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from qualia import images, text, workspace
from qualia.errors import BackboneUnavailable, CorruptArtifact, IndexMismatch, InvalidArgument, NotFound
from qualia.index import ProfileIndex

if TYPE_CHECKING:
    from qualia.adapter_bank import LowRank, LowRankCache
    from qualia.backbone import Backbone
    from qualia.embed import Encoder

log = logging.getLogger(__name__)

DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000


def decode_image(
    data: bytes,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Image.Image:
    """Query bytes -> RGB picture, bounded as the picture policy says (``qualia.images``)."""
    return images.decode(data, max_bytes, max_pixels).picture


def load_image_file(path: Path, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> Image.Image:
    """The picture in file ``path`` for a query; NotFound / InvalidImage / ImageTooLarge with a plain reason."""
    return images.read(path, max_bytes, DEFAULT_MAX_IMAGE_PIXELS)


class BackboneCache:
    """Backbones by (name, pretrained), each loaded once and shared by every profile that uses it."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._loaded: dict[tuple[str, str | None], Backbone] = {}
        self._lock = threading.Lock()

    def get(self, name: str, pretrained: str | None) -> Backbone:
        key = (name, pretrained)
        with self._lock:
            if key not in self._loaded:
                from qualia.backbone import load_backbone  # torch: only once a model is needed

                log.info("loading backbone %s (%s)", name, pretrained)
                self._loaded[key] = load_backbone(name, pretrained, device=self.device)
            return self._loaded[key]


class ProfileSearcher:
    """One index version of a profile with the encoder that built it.

    ``encoder`` is fixed, or, with ``low_rank_of``, made for each use over the shared backbone from an
    adapter cache (``qualia.adapter_bank.LowRankCache``), so an adapter the cache let go is read again
    when its profile is next searched. ``low_rank_of(read)`` gives the backbone and the adapter, read
    if need be when ``read``, else only as held (None when it is not)."""

    def __init__(self, profile: str, index: ProfileIndex, encoder: Encoder | None = None,
                 low_rank_of: Callable[[bool], tuple[Backbone, LowRank | None]] | None = None):  # fmt: skip
        if (encoder is None) == (low_rank_of is None):
            raise ValueError("give an encoder or where its adapter comes from, not both")
        self.profile = profile
        self.index = index
        self._encoder = encoder
        self._low_rank_of = low_rank_of

    @property
    def encoder(self) -> Encoder:
        if self._encoder is not None:
            return self._encoder
        from qualia.embed import Encoder

        backbone, low_rank = self._low_rank_of(True)
        return Encoder(backbone.model, backbone, low_rank=low_rank)

    def held_encoder(self) -> Encoder | None:
        """``encoder`` when making it reads nothing (a fixed encoder, or an adapter the cache holds with
        its files unchanged), else None: a few ``stat`` calls at most, so a server's event loop can ask
        instead of handing every query to a thread for it."""
        if self._encoder is not None:
            return self._encoder
        from qualia.embed import Encoder

        backbone, low_rank = self._low_rank_of(False)
        return None if low_rank is None else Encoder(backbone.model, backbone, low_rank=low_rank)

    @property
    def index_version(self) -> str:
        return self.index.version

    @property
    def adapter_version(self) -> str | None:
        return self.index.manifest.get("adapter_version")

    @classmethod
    def load(
        cls,
        ws: workspace.Workspace,
        profile: str,
        version: str | None = None,
        backbones: BackboneCache | None = None,
        adapters: LowRankCache | None = None,
    ) -> ProfileSearcher:
        """Index ``version`` of ``profile`` with its encoder; None: the newest usable one (an older
        version stands in for a damaged newest, logged). NoIndex if there is none. With ``adapters``
        the adapter stays unmerged over the shared backbone (see the class)."""
        if version is not None:
            return cls.from_folder(ws, profile, ws.index(profile, version), backbones, adapters)
        ws.require(profile, "index")
        _, searcher = workspace.newest_usable(
            ws.index_dir(profile), lambda folder: cls.from_folder(ws, profile, folder, backbones, adapters),
            f"index of {profile!r}",
        )
        return searcher

    @classmethod
    def from_folder(
        cls,
        ws: workspace.Workspace,
        profile: str,
        folder: Path,
        backbones: BackboneCache | None = None,
        adapters: LowRankCache | None = None,
    ) -> ProfileSearcher:
        """The index in ``folder`` with the encoder that built it: CorruptArtifact when the index or its
        adapter is damaged, IndexMismatch when they cannot be served here as they are."""
        from qualia.embed import Encoder

        index = ProfileIndex.load(folder)  # files and checksums first: a damaged index costs no model load
        manifest = index.manifest
        if not manifest.get("backbone"):
            raise IndexMismatch(f"index {folder.name} of {profile!r} does not record its backbone; rebuild it")
        try:
            backbone = (backbones or BackboneCache()).get(manifest["backbone"], manifest.get("pretrained"))
        except BackboneUnavailable as e:  # e.g. hub weights not cached on this machine
            raise IndexMismatch(f"index {folder.name} of {profile!r} needs a backbone not available here: {e}") from e
        built_with = manifest.get("weights_sha256")
        if built_with and backbone.weights_sha256 != built_with:
            raise IndexMismatch(
                f"index {folder.name} of {profile!r} was built on {manifest['backbone']} weights "
                f"{built_with[:12]}, but the weights loaded here are {backbone.weights_sha256[:12]}"
            )
        adapter_dir = None
        if manifest.get("adapter_version"):
            adapter_dir = cls._adapter_of(ws, profile, folder, manifest["adapter_version"])
        if backbone.embed_dim != index.dim:
            raise IndexMismatch(f"encoder gives dim {backbone.embed_dim}, index {folder.name} holds dim {index.dim}")
        try:
            if adapters is not None and adapter_dir is not None:
                adapters.get(adapter_dir, backbone)  # read now: a damaged adapter fails the load, not a query
                searcher = cls(profile, index, low_rank_of=lambda read: (
                    backbone, adapters.get(adapter_dir, backbone) if read else adapters.held(adapter_dir, backbone)))
            else:
                searcher = cls(profile, index, Encoder.load(backbone, adapter_dir))
        except CorruptArtifact as e:
            raise CorruptArtifact(f"adapter {adapter_dir.name} of {profile!r} is damaged: {e}") from e
        log.info("loaded index %s of %s (adapter %s)", index.version, profile, manifest.get("adapter_version"))
        return searcher

    @staticmethod
    def _adapter_of(ws: workspace.Workspace, profile: str, folder: Path, version: Any) -> Path:
        """The adapter folder the index names; whether it fits the base weights, ``load_adapter`` checks."""
        try:
            return ws.adapter(profile, version)
        except NotFound as e:
            raise IndexMismatch(
                f"index {folder.name} of {profile!r} was built with adapter {str(version)[:40]}, "
                "which is gone; rebuild the index"
            ) from e

    def search_text(self, query: str, k: int = 10, modality: str = "any") -> list[dict[str, Any]]:
        vector = self.encoder.encode_texts([query_words(query)])[0]
        return self.search_vector(vector, "text", k, modality)

    def search_image(self, image: Image.Image, k: int = 10, modality: str = "any") -> list[dict[str, Any]]:
        vector = self.encoder.encode_images([image.convert("RGB")])[0]
        return self.search_vector(vector, "image", k, modality)

    def search_like(self, row_id: str, k: int = 10, modality: str = "any") -> list[dict[str, Any]]:
        """More like row ``row_id`` of the index (not itself): its stored vector is the query."""
        row = self.index.row(row_id)
        if row is None:
            raise NotFound(f"no {str(row_id)[:80]!r} in the index of {self.profile!r}")
        found = self.index.search(self.index.stored_vector(row_id), k=k + 1, modality=modality,
                                  query_modality=row["modality"])  # fmt: skip
        return [r for r in found if r["id"] != row_id][:k]

    def search_vector(self, vector: np.ndarray, query_modality: str, k: int = 10, modality: str = "any") -> list[dict[str, Any]]:
        """The index's nearest rows to a query the encoder already embedded (the service encodes in batches)."""
        query = self.index.query_vector(vector, query_modality)
        return self.index.search(query, k=k, modality=modality, query_modality=query_modality)


def with_files(ws: workspace.Workspace, profile: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``results`` with ``file``: the absolute path of each result's picture in the workspace (a text's:
    the picture it describes), which outlives the site it came from; None when there is none on disk."""
    from qualia.corpus import Corpus

    with Corpus.open(ws, profile, readonly=True) as corpus:
        def file_of(result: dict[str, Any]) -> str | None:
            sha = result.get("sha256")
            path = corpus.image_path(sha) if sha else None
            return str(path.resolve()) if path is not None and path.is_file() else None

        return [{**r, "file": file_of(r)} for r in results]


def query_words(query: str) -> str:
    """A query text as the index's texts were embedded (cleaned and cut by the text policy)."""
    words = text.clean(query)
    if not words:
        raise InvalidArgument("the query text is empty")
    if len(words) > text.MAX_QUERY_CHARS:
        raise InvalidArgument(f"the query text is over {text.MAX_QUERY_CHARS} characters")
    return text.cut(words)
