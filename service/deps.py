"""Request dependencies. Auth (API keys scoped to profiles) will hook in at ``profile_name``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from qualia import workspace
from qualia.corpus import Corpus

from service.resources import Resources
from service.settings import ServiceSettings


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_resources(request: Request) -> Resources:
    return request.app.state.resources


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]


def profile_name(
    settings: SettingsDep,
    profile: Annotated[str, Path(description="profile name, [a-z0-9][a-z0-9_-]{0,63}")],
) -> str:
    """A profile that exists; an invalid name is reported as not found, never used as a path."""
    if not workspace.PROFILE_NAME.fullmatch(profile):
        raise HTTPException(404, detail=f"no profile {profile!r} (not a valid profile name)")
    if not workspace.profile_dir(profile, settings.root).is_dir():
        raise HTTPException(404, detail=f"no profile {profile!r}")
    return profile


ProfileDep = Annotated[str, Depends(profile_name)]


def open_corpus(profile: str, settings: ServiceSettings) -> Corpus:
    """The profile's corpus, read-only. Open and use it in one thread (SQLite), so not as a dependency."""
    path = workspace.corpus_path(profile, settings.root)
    if not path.exists():
        raise HTTPException(404, detail=f"profile {profile!r} has no corpus")
    return Corpus(path, images_root=workspace.images_dir(settings.root), readonly=True)
