"""Service settings, from the environment with the prefix ``QUALIA_`` (``QUALIA_HOME``, ``QUALIA_MAX_BODY_BYTES`` ...)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from qualia.workspace import Workspace


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUALIA_", extra="ignore")

    home: Path | None = Field(None, description="workspace root (QUALIA_HOME); default ~/.qualia")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="larger request bodies get 413")
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="larger query images get 413")
    max_image_pixels: int = Field(25_000_000, ge=1, description="query images with more pixels get 413")
    max_concurrent_images: int = Field(
        2, ge=1, description="query pictures decoded and embedded at once; more wait (bounds the memory they take)"
    )
    default_k: int = Field(10, ge=1, le=100)
    adapter_budget_bytes: int = Field(
        256 * 1024 * 1024, ge=0, description="memory for profiles' adapters kept unmerged; the least recently used leave first"
    )
    torch_threads: int = Field(
        1, ge=0, description="torch threads encoding a query alone (0: torch's default); see docs/benchmarks.md"
    )
    batch_torch_threads: int = Field(
        0, ge=0, description="torch threads encoding a batch of queries that arrived together (0: one per core)"
    )
    image_hosts: str = Field(
        "", description="comma-separated hosts image_url queries may be fetched from (QUALIA_IMAGE_HOSTS); empty: "
                        "the hosts each profile's corpus came from. Only hosts listed here may resolve to private addresses"
    )
    image_fetch_timeout: float = Field(10.0, gt=0, le=120, description="seconds an image_url fetch may take in all")
    max_batch: int = Field(32, ge=1, le=1024, description="queries encoded together at most")
    device: str = "cpu"
    preload: bool = Field(True, description="load the backbones of existing indexes at startup")
    access_log: bool = Field(
        False, description="log a line for every request (uvicorn's access log; QUALIA_ACCESS_LOG=1 or qualia serve "
                           "--access-log); off, /metrics still counts and times them, and a search costs less"
    )
    require_keys: bool = Field(
        False, description="refuse /v1 without a valid key even when the key store is empty (set when not on loopback)"
    )

    @property
    def image_host_list(self) -> list[str]:
        return [h.strip() for h in self.image_hosts.split(",") if h.strip()]

    @property
    def workspace(self) -> Workspace:
        return Workspace.at(self.home)
