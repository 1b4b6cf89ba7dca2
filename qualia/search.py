"""Query side, shared by the CLI and the service: a profile's index plus the exact encoder it was built with.

An index is only meaningful with the backbone weights and adapter that embedded it, so loading refuses
any other pairing (IndexMismatch) instead of returning scores from a different space.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from qualia import workspace
from qualia.corpus import InvalidImage, validate_image
from qualia.index import ProfileIndex, latest_index, read_manifest

if TYPE_CHECKING:
    from qualia.backbone import Backbone
    from qualia.embed import Encoder

log = logging.getLogger(__name__)

DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 25_000_000


class NoIndex(FileNotFoundError):
    """The profile has no built index (or no such profile)."""


class IndexMismatch(RuntimeError):
    """The backbone or adapter available now is not the one the index was built with."""


class InvalidQueryImage(ValueError):
    """Query bytes that are not a picture we can read."""


class QueryImageTooLarge(InvalidQueryImage):
    pass


def decode_image(
    data: bytes,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> Image.Image:
    """Query bytes -> RGB picture; QueryImageTooLarge / InvalidQueryImage with the reason otherwise."""
    if not data:
        raise InvalidQueryImage("the image is empty")
    if len(data) > max_bytes:
        raise QueryImageTooLarge(f"image of {len(data)} bytes is over the {max_bytes}-byte limit")
    try:
        # The header alone gives the size: refuse a decompression bomb before decoding it.
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Image.DecompressionBombError as e:
        raise QueryImageTooLarge(f"image is too large: {e}") from e
    except Exception as e:  # PIL raises many kinds on garbage input
        raise InvalidQueryImage(f"not a readable image: {e}") from e
    if width * height > max_pixels:
        raise QueryImageTooLarge(f"image of {width}x{height} pixels is over the {max_pixels}-pixel limit")
    try:
        validate_image(data)
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")
    except InvalidImage as e:
        raise InvalidQueryImage(str(e)) from e
    except Exception as e:
        raise InvalidQueryImage(f"not a readable image: {e}") from e


def load_image_file(path: Path, max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> Image.Image:
    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise QueryImageTooLarge(f"{path} is over the {max_bytes}-byte limit")
    return decode_image(path.read_bytes(), max_bytes=max_bytes)


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
                from qualia.backbone import load_backbone

                log.info("loading backbone %s (%s)", name, pretrained)
                self._loaded[key] = load_backbone(name, pretrained, device=self.device)
            return self._loaded[key]


def adapter_folder(profile: str, version: str, root: Path | None = None) -> Path:
    if not workspace.VERSION_NAME.fullmatch(version or ""):
        raise IndexMismatch(f"index names adapter version {version!r}, which is not a version name")
    return workspace.profile_dir(profile, root) / "adapters" / version


class ProfileSearcher:
    """One index version of a profile with the encoder that built it."""

    def __init__(self, profile: str, index: ProfileIndex, encoder: Encoder):
        self.profile = profile
        self.index = index
        self.encoder = encoder

    @property
    def index_version(self) -> str:
        return self.index.version

    @property
    def adapter_version(self) -> str | None:
        return self.index.manifest.get("adapter_version")

    @classmethod
    def load(
        cls,
        profile: str,
        version: str | None = None,
        root: Path | None = None,
        backbones: BackboneCache | None = None,
    ) -> ProfileSearcher:
        workspace.check_profile_name(profile)
        if version is None:
            folder = latest_index(profile, root)
            if folder is None:
                raise NoIndex(f"profile {profile!r} has no index: run `qualia index {profile}` first")
        else:
            try:
                folder = workspace.resolve_version(workspace.profile_dir(profile, root) / "index", version)
            except FileNotFoundError as e:
                raise NoIndex(f"profile {profile!r} has no index version {version!r}") from e
        return cls.from_folder(profile, folder, root=root, backbones=backbones)

    @classmethod
    def from_folder(
        cls,
        profile: str,
        folder: Path,
        root: Path | None = None,
        backbones: BackboneCache | None = None,
    ) -> ProfileSearcher:
        from qualia.backbone import BackboneUnavailable
        from qualia.embed import Encoder

        manifest = read_manifest(folder)
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
            adapter_dir = adapter_folder(profile, manifest["adapter_version"], root)
            if not adapter_dir.is_dir():
                raise IndexMismatch(
                    f"index {folder.name} of {profile!r} was built with adapter {manifest['adapter_version']}, "
                    "which is gone; rebuild the index"
                )
            from qualia.lora import read_adapter_meta

            try:
                adapter_weights = read_adapter_meta(adapter_dir).get("weights_sha256")
            except (OSError, ValueError) as e:
                raise IndexMismatch(f"adapter {adapter_dir.name} of {profile!r} is unusable: {e}") from e
            if built_with and adapter_weights != built_with:
                raise IndexMismatch(
                    f"adapter {adapter_dir.name} of {profile!r} was trained on other base weights than "
                    f"index {folder.name} was built with"
                )
        index = ProfileIndex.load(folder)
        try:
            encoder = Encoder.load(backbone, adapter_dir)
        except (OSError, ValueError) as e:  # incomplete adapter folder, or other base weights
            raise IndexMismatch(f"cannot load adapter {adapter_dir} of {profile!r}: {e}") from e
        if encoder.dim != index.dim:
            raise IndexMismatch(f"encoder gives dim {encoder.dim}, index {folder.name} holds dim {index.dim}")
        log.info("loaded index %s of %s (adapter %s)", index.version, profile, manifest.get("adapter_version"))
        return cls(profile, index, encoder)

    def search_text(self, text: str, k: int = 10, modality: str = "any") -> list[dict[str, Any]]:
        if not text or not text.strip():
            raise ValueError("the query text is empty")
        return self.index.search(self.encoder.encode_texts([text])[0], k=k, modality=modality)

    def search_image(self, image: Image.Image, k: int = 10, modality: str = "any") -> list[dict[str, Any]]:
        return self.index.search(self.encoder.encode_images([image.convert("RGB")])[0], k=k, modality=modality)
