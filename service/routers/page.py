"""The web page at ``/`` and the OpenAPI pages (``/docs``, ``/redoc``), with every asset served by this process.

The page is plain HTML, CSS and JavaScript under ``service/static`` (no build step). Swagger UI and ReDoc come
from the ``fastapi-offline`` package's copies, wired the way FastAPI documents self-hosting them, so the
OpenAPI pages work on a machine with no way out.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

PAGE_DIR = Path(__file__).resolve().parent.parent / "static"
PAGE_ASSETS = "/static"
DOCS_DIR = Path(str(resources.files("fastapi_offline") / "static"))
DOCS_ASSETS = "/static-docs"

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=FileResponse)
def page() -> FileResponse:
    """The search page; what it shows is chosen by its address (``/?profile=P&q=WORDS&modality=M``), in the browser."""
    return FileResponse(PAGE_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        # Swagger UI would otherwise send the whole API description to its public validator.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        with_google_fonts=False,
    )
