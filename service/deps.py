"""Request dependencies, auth among them.

Auth: with keys in the store (or ``require_keys``), every ``/v1`` request needs ``Authorization: Bearer <key>``
(401 otherwise) and reaches only the key's profile; any other profile is a 404, as if it did not exist.
``key_scope`` runs once a request (FastAPI caches it), as a router dependency and inside ``profile_name``.

The dependencies are ``async def`` though they do no awaiting: FastAPI runs a plain ``def`` dependency in
a worker thread, and those hops were half of a search's time in the server (py-spy); what they do is a
few ``stat`` calls, and reading the small key store again when its files change.

FastAPI solves every dependency of the tree at every request, walking a shared one's own dependencies
again wherever it appears (its value is cached, its walk is not): ``key_scope`` and ``profile_name``, on
every ``/v1`` request, read the app's state from the request rather than through dependencies of their
own (13 solves a search before, 6 now).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from qualia import workspace
from qualia.corpus import Corpus
from qualia.feedback import ANONYMOUS
from qualia.workspace import Workspace

from service.keys import KeyRing, public_prefix
from service.resources import Resources
from service.settings import ServiceSettings


class ErrorDetail(BaseModel):
    detail: str | list[dict[str, Any]]


_ANSWERS = {
    400: "the picture cannot be read, or the base64 is not base64",
    401: "an API key is required and was missing, invalid or revoked",
    403: "image_url's host is not allowed, or resolves to a non-public address",
    404: "no such profile (or the key does not reach it), item, picture, index or report",
    408: "image_url took too long",
    409: "the index or adapter cannot be served as it is (damaged, or built on weights not available here)",
    413: "the body or the picture is over its size limit",
    415: "the body is neither JSON nor multipart",
    422: "a field is missing, of the wrong type or out of range",
    503: "the API key store cannot be read; requests are refused until it is repaired",
}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers an endpoint can give, for its OpenAPI entry (all share ``{"detail": ...}``)."""
    return {status: {"model": ErrorDetail, "description": _ANSWERS[status]} for status in statuses}


async def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


async def get_resources(request: Request) -> Resources:
    return request.app.state.resources


async def get_workspace(request: Request) -> Workspace:
    return request.app.state.workspace


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]
WorkspaceDep = Annotated[Workspace, Depends(get_workspace)]

bearer = HTTPBearer(auto_error=False, description="an API key from `qualia keys create PROFILE`")


def keyring_in(state: Any) -> KeyRing:
    """The app's key ring (``state``: the app's state), made on first use, so create_app needs no auth wiring."""
    if not hasattr(state, "keyring"):
        state.keyring = KeyRing(state.workspace)
    return state.keyring


def keyring_of(request: Request) -> KeyRing:
    return keyring_in(request.app.state)


async def key_scope(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str | None:
    """The profile the request's key is scoped to; None when no keys are configured (all open)."""
    if not request.app.state.settings.require_keys and not keyring_of(request).configured():
        return None
    if credentials is None:
        raise HTTPException(401, detail="an API key is required: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    profile = keyring_of(request).profile_of(credentials.credentials)
    if profile is None:
        raise HTTPException(401, detail="invalid or revoked API key",
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return profile


ScopeDep = Annotated[str | None, Depends(key_scope)]


async def caller(
    scope: ScopeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """Who is asking, as a feedback mark records it: the key's public prefix (``qualia keys list`` shows
    it, so an operator can tell whose marks are whose), or ``anonymous`` when the server has no keys."""
    if scope is None or credentials is None:
        return ANONYMOUS
    return public_prefix(credentials.credentials)


CallerDep = Annotated[str, Depends(caller)]


async def profile_name(
    request: Request,
    scope: ScopeDep,
    profile: Annotated[str, Path(description="profile name, [a-z0-9][a-z0-9_-]{0,63}")],
) -> str:
    """A profile that exists and the caller's key reaches; anything else is not found, never used as a path."""
    if not workspace.PROFILE_NAME.fullmatch(profile):
        raise HTTPException(404, detail=f"no profile {profile[:80]!r} (not a valid profile name)")
    if (scope is not None and profile != scope) or not request.app.state.workspace.profile_dir(profile).is_dir():
        raise HTTPException(404, detail=f"no profile {profile!r}")
    return profile


ProfileDep = Annotated[str, Depends(profile_name)]


def open_corpus(ws: Workspace, profile: str) -> Corpus:
    """The profile's corpus, read-only. Open and use it in one thread (SQLite), so not as a dependency."""
    if not ws.corpus_path(profile).exists():
        raise HTTPException(404, detail=f"profile {profile!r} has no corpus")
    return Corpus(ws.corpus_path(profile), ws.images_dir, readonly=True)
