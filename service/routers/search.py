"""``POST /v1/profiles/{profile}/search``: JSON ``{text}`` or ``{image_base64}``, or multipart with an ``image`` file."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from qualia.text import MAX_QUERY_CHARS

from service.deps import ProfileDep, answers, key_scope
from service.queries import decode_base64, fetch_query_picture, query_vector, with_image_link

router = APIRouter(prefix="/v1/profiles", tags=["search"], dependencies=[Depends(key_scope)],
                   responses=answers(401, 503))

class SearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # strict: true and "5" are not numbers of results (a form's fields are converted in _parse_form)
    k: int | None = Field(None, ge=1, le=100, strict=True, description="how many results (default 10)")
    modality: Literal["image", "text", "any"] = "any"


class SearchRequest(SearchOptions):
    text: str | None = Field(None, min_length=1, max_length=MAX_QUERY_CHARS)
    image_base64: str | None = Field(None, min_length=1, description="picture bytes, base64")
    image_url: str | None = Field(None, min_length=1, max_length=2048,
                                  description="a picture on one of the profile's allowed hosts (QUALIA_IMAGE_HOSTS)")
    id: str | None = Field(None, min_length=1, max_length=80, description="an index row (img-..., txt-...): more like it")

    @model_validator(mode="after")
    def one_query(self) -> SearchRequest:
        given = [name for name in QUERY_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(repr(n) for n in QUERY_FIELDS)}")
        if self.text is not None and not self.text.strip():
            raise ValueError("'text' is blank")
        return self


QUERY_FIELDS = ("text", "image_base64", "image_url", "id")


class SearchResult(BaseModel):
    id: str
    modality: Literal["image", "text"]
    score: float
    text: str | None
    image: str | None = Field(description="the service's own URL of the picture (of a text: the picture it describes)")
    image_url: str | None
    source: str | None
    source_url: str | None
    degree: int | None


class SearchResponse(BaseModel):
    results: list[SearchResult]
    adapter: str | None
    index: str
    took_ms: float


def _invalid(e: ValidationError, where: str) -> RequestValidationError:
    errors = e.errors(include_url=False, include_context=False)
    return RequestValidationError([{**err, "loc": (where, *err["loc"])} for err in errors])


async def _parse_form(form: FormData, settings) -> tuple[SearchOptions, str | None, bytes | None]:
    upload = form.get("image")
    fields: dict[str, Any] = {name: value for name, value in form.multi_items() if name not in ("image", "text")}
    if isinstance(fields.get("k"), str) and fields["k"].isascii() and fields["k"].isdigit():
        fields["k"] = int(fields["k"])  # a form field is text; in JSON, k must be a number
    try:
        options = SearchOptions.model_validate(fields)
    except ValidationError as e:
        raise _invalid(e, "form") from e
    text = form.get("text")
    if upload is not None and not isinstance(upload, UploadFile):
        raise HTTPException(422, detail="'image' must be a file")
    if text is not None and not isinstance(text, str):
        raise HTTPException(422, detail="'text' must be a plain field, not a file")
    text = text if text and text.strip() else None
    if (upload is None) == (not text):
        raise HTTPException(422, detail="give exactly one of an 'image' file or 'text'")
    if upload is None:
        if len(text) > MAX_QUERY_CHARS:
            raise HTTPException(422, detail=f"'text' is over {MAX_QUERY_CHARS} characters")
        return options, text, None
    data = await upload.read(settings.max_image_bytes + 1)
    return options, None, data


async def _parse(request: Request, settings) -> tuple[SearchOptions, str | None, bytes | None, SearchRequest | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        # as a context manager, so the uploads' spooled temporary files are closed with the request
        async with request.form(max_files=1, max_fields=8) as form:
            return (*await _parse_form(form, settings), None)
    if content_type in ("application/json", ""):
        try:
            body = SearchRequest.model_validate_json(await request.body())
        except ValidationError as e:
            raise _invalid(e, "body") from e
        data = decode_base64(body.image_base64, settings) if body.image_base64 is not None else None
        return body, body.text, data, body
    raise HTTPException(415, detail="send application/json or multipart/form-data")


_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": SearchRequest.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    "text": {"type": "string"},
                    "k": {"type": "integer", "minimum": 1, "maximum": 100},
                    "modality": {"type": "string", "enum": ["image", "text", "any"]},
                },
            }
        },
    },
}


@router.post("/{profile}/search", response_model=SearchResponse, openapi_extra={"requestBody": _REQUEST_BODY},
             responses=answers(400, 403, 404, 408, 409, 413, 415))
async def search(request: Request, profile: ProfileDep) -> Any:
    """Nearest pictures and texts of the profile's index to a text, a picture (sent, or fetched from an
    allowed ``image_url``), or one of its own rows (``id``: more like it)."""
    # the app's state as is, not as dependencies: each is solved at every request (deps.py)
    settings, resources = request.app.state.settings, request.app.state.resources
    options, text, image_bytes, body = await _parse(request, settings)
    k = options.k or settings.default_k
    started = time.perf_counter()
    searcher = resources.current_searcher(profile) or await run_in_threadpool(resources.searcher, profile)
    if body is not None and body.id is not None:
        results = await run_in_threadpool(searcher.search_like, body.id, k, options.modality)
    else:
        if body is not None and body.image_url is not None:
            image_bytes = await run_in_threadpool(fetch_query_picture, body.image_url, searcher, settings)
        encoder = searcher.held_encoder()  # no thread hop while the adapter is in memory
        if encoder is None:
            encoder = await run_in_threadpool(lambda: searcher.encoder)  # reads the adapter again
        results = await search_encoded(resources, settings, searcher, encoder, text, image_bytes, k, options.modality)
    return search_answer(profile, searcher, results, started)


async def search_encoded(resources, settings, searcher, encoder, text: str | None, image_bytes: bytes | None, k: int,
                         modality: str) -> list[dict[str, Any]]:  # fmt: skip
    """The ``k`` rows of ``modality`` nearest to the words or picture, encoded on the batching worker and
    searched right after on it (faiss off the event loop, no thread hop of its own)."""
    results, _ = await query_vector(
        resources, encoder, settings, text, image_bytes,
        then=lambda vector, query_modality: searcher.search_vector(vector, query_modality, k, modality))
    return results


def search_answer(profile: str, searcher, results: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """The answer (``SearchResponse``'s fields) to a search of ``profile`` begun at ``started``."""
    return {
        "results": [with_image_link(profile, r) for r in results],
        "adapter": searcher.adapter_version,
        "index": searcher.index_version,
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
    }
