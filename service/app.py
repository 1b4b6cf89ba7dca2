"""The HTTP service: ``create_app(settings)`` is what ``qualia serve`` runs with uvicorn.

Routers hold the endpoints; ``Resources`` holds the heavy state (backbones, per-profile searchers);
library errors (``qualia.errors``) map to their HTTP status here, once, so endpoints stay free of
HTTP error plumbing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from qualia.errors import QualiaError

from service.lane import SearchLane, replay_body
from service.metrics import MetricsMiddleware, ServiceMetrics, metrics_endpoint
from service.resources import Resources
from service.routers import clip_retrieval, feedback, health, page, profiles, search
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Answer 413 to a request body over ``max_bytes``, declared (Content-Length) or streamed (chunked)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._too_large(scope, receive, send)
            return
        # Read the body up front (it is capped), so an oversized stream is refused before any work.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay_body(b"".join(chunks), False, receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body is over the {self.max_bytes}-byte limit"},
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


async def qualia_error(request: Request, exc: Exception) -> JSONResponse:
    """Every error the library raises on purpose, answered with the status its class names."""
    status = exc.http_status if isinstance(exc, QualiaError) else 500
    return JSONResponse({"detail": str(exc)}, status_code=status)


EXCERPT_CHARS = 80


def excerpt(value: Any) -> Any:
    """What an error may show of an input: a short excerpt of text, plain scalars as they are, and for
    anything else only its kind (never the object's repr, never undecodable bytes)."""
    if isinstance(value, bytes):
        value = value[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    if isinstance(value, str):
        value = value if len(value) <= EXCERPT_CHARS else value[:EXCERPT_CHARS] + "…"
        # JSON may escape a lone surrogate, which no UTF-8 answer can carry back
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf or nan: a request with 1e309 in it must not make a 500
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return f"<{type(value).__name__}>"


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, with each error's input cut to an excerpt and its context reduced to plain values.

    FastAPI's own handler encodes the raw input: a body that is not UTF-8 made it fail with a 500, and a
    10 MB text came back whole.
    """
    errors = []
    for error in exc.errors() if isinstance(exc, RequestValidationError) else []:
        shown = {key: error[key] for key in ("type", "msg") if key in error}
        if "loc" in error:  # a field's name is the client's too
            shown["loc"] = [excerpt(part) for part in error["loc"]]
        if "input" in error:
            shown["input"] = excerpt(error["input"])
        context = {k: excerpt(v) for k, v in (error.get("ctx") or {}).items()}
        if context:
            shown["ctx"] = context
        errors.append(shown)
    return JSONResponse({"detail": errors}, status_code=422)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    ws = settings.workspace  # built once here, passed down (deps.WorkspaceDep)
    resources = Resources(ws, settings.device, settings.max_concurrent_images, settings.adapter_budget_bytes,
                          settings.torch_threads, settings.max_batch, settings.batch_torch_threads)  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources.start()
        if settings.preload:
            await run_in_threadpool(resources.preload)
        log.info("qualia service ready (workspace %s; access log %s)", ws.root,
                 "on" if settings.access_log else "off: qualia serve --access-log or QUALIA_ACCESS_LOG=1 turns it on")
        yield
        resources.close()

    app = FastAPI(
        title="qualia",
        summary="Search a person's Substack and Pinterest with their own CLIP adapter.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by routers/page.py from local assets, not from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.workspace = ws
    app.state.resources = resources
    # innermost first: the lane sees a body BodySizeLimit has capped, and /metrics counts what it answers
    app.add_middleware(SearchLane, state=app.state, route=search.router.routes[0])
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.metrics = metrics = ServiceMetrics(resources)
    resources.worker.on_batch = metrics.batch.observe
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: a 413 is counted too
    app.add_exception_handler(QualiaError, qualia_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.include_router(health.router)
    app.include_router(profiles.router)
    app.include_router(search.router)
    app.include_router(feedback.router)
    app.include_router(clip_retrieval.router)
    app.include_router(page.router)
    app.mount(page.PAGE_ASSETS, StaticFiles(directory=page.PAGE_DIR), name="page-assets")
    app.mount(page.DOCS_ASSETS, StaticFiles(directory=page.DOCS_DIR), name="docs-assets")
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], tags=["health"], include_in_schema=True,
                      response_class=PlainTextResponse, summary="Prometheus metrics")
    return app
