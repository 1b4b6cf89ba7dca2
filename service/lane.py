"""The search lane: a text search sent as JSON, answered below FastAPI's routing, dependencies and response
handling, by the route's own code.

Why: on the stand-in backbone a query costs about 6 ms to encode and search, and FastAPI's handling around
it (the router's matching, solving the route's dependencies, validating the answer through the response
model) cost the server about 1.4 ms of CPU a request, most of it holding the GIL the encoder also needs.
A bare ASGI answer to the same query costs a fraction of that (docs/benchmarks.md, issue 9).

The lane answers only a request that is plainly fine, with everything it needs in memory: ``POST
/v1/profiles/{profile}/search``, a JSON body ``SearchRequest`` accepts with ``text`` in it, a key that
reaches the profile (or a server with no keys), and the profile's current index and adapter held. Any
other request, and any doubt (a key to refuse, a body to answer 422, a picture, the first query of a
profile, which loads it), goes on to the FastAPI route with its body replayed: every error answer and
every OpenAPI entry come from one place, and the lane's answers are the route's (``routers.search``).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qualia import workspace
from qualia.errors import QualiaError

from service.deps import keyring_in
from service.routers.search import SearchRequest, SearchResponse, search_answer, search_encoded

SEARCH_PATH = re.compile(r"/v1/profiles/(?P<profile>[^/]+)/search")
JSON_HEADERS = [(b"content-type", b"application/json")]


class SearchLane:
    """ASGI middleware: answers what the module docstring says, passes everything else on to ``app``."""

    def __init__(self, app: ASGIApp, state: Any, route: APIRoute) -> None:
        self.app = app
        self.state = state  # the FastAPI app's state: settings, resources, workspace, the key ring
        self.route = route  # set in the scope as the router would: /metrics counts the lane's answers as the route's
        self._profile_dirs: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = SEARCH_PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        if body is None:  # the client left
            return
        if not more:
            answered = await self._answer(scope, match["profile"], body, send)
            if answered:
                return
        await self.app(scope, replay_body(body, more, receive), send)

    async def _answer(self, scope: Scope, profile: str, body: bytes, send: Send) -> bool:
        """True when the lane answered (the answer is sent), False to leave the request to the route."""
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type not in (b"application/json", b"") or not self._reaches(profile, headers.get(b"authorization")):
            return False
        try:
            request = SearchRequest.model_validate_json(body)
        except ValidationError:
            return False
        if request.text is None:
            return False
        state = self.state
        started = time.perf_counter()
        searcher = state.resources.current_searcher(profile)
        encoder = searcher.held_encoder() if searcher is not None else None
        if encoder is None:
            return False
        k = request.k or state.settings.default_k
        try:
            results = await search_encoded(state.resources, state.settings, searcher, encoder, request.text, None, k,
                                           request.modality)  # fmt: skip
        except QualiaError as e:  # as the app's handler answers it (app.qualia_error)
            await _send(send, e.http_status, JSONResponse({"detail": str(e)}).body)
            return True
        scope["route"] = self.route
        answer = SearchResponse.model_validate(search_answer(profile, searcher, results, started))
        await _send(send, 200, answer.__pydantic_serializer__.to_json(answer))
        return True

    def _reaches(self, profile: str, authorization: bytes | None) -> bool:
        """The profile exists and the request may search it: as ``deps.profile_name`` and ``deps.key_scope``
        decide, in the cases where they let the request through (any other case is theirs to answer)."""
        if not workspace.PROFILE_NAME.fullmatch(profile):
            return False
        folder = self._profile_dirs.get(profile)
        if folder is None:
            folder = self._profile_dirs[profile] = str(self.state.workspace.profile_dir(profile))
        if not os.path.isdir(folder):
            return False
        keyring = keyring_in(self.state)
        try:
            if not self.state.settings.require_keys and not keyring.configured():
                return True
            scheme, _, key = (authorization or b"").decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and bool(key) and keyring.profile_of(key) == profile
        except QualiaError:  # the key store cannot be read: the route answers 503
            return False


async def _read_body(receive: Receive) -> tuple[bytes | None, bool]:
    """(the body, whether more of it is to come): at most one message here (``BodySizeLimit`` outside has
    gathered the body into one already); None when the client disconnected."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None, False
    return message.get("body", b""), message.get("more_body", False)


def replay_body(body: bytes, more: bool, receive: Receive) -> Receive:
    """``receive`` as if nothing had been read of it: ``body`` first (``more``: the rest still to come)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay


async def _send(send: Send, status: int, payload: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": payload})
