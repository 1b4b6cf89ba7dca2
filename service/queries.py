"""What the search endpoints share: a query's picture from base64 or an allowed URL, its vector from the
encoding worker, and the service's own picture link on each result (used by ``routers.search`` and
``routers.clip_retrieval``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException

from qualia.search import decode_image, query_words

from service.fetch import FetchRefused, fetch_picture


def decode_base64(value: str, settings) -> bytes:
    # base64 is 4/3 the size of the bytes: refuse early, before decoding a huge string
    if len(value) > settings.max_image_bytes * 4 // 3 + 4:
        raise HTTPException(413, detail=f"image is over the {settings.max_image_bytes}-byte limit")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise HTTPException(400, detail=f"image_base64 is not valid base64: {e}") from e


async def query_vector(resources, encoder, settings, text: str | None, image_bytes: bytes | None,
                       then: Callable[[Any, str], Any] | None = None) -> tuple[Any, str]:  # fmt: skip
    """(the query's unit vector, its modality): words or picture bytes through the batching worker;
    decoding and preprocessing a few at a time (``picture_pool``), so what waits for the worker is small.
    With ``then``: (``then(vector, modality)``, modality), computed on the worker."""
    modality = "text" if image_bytes is None else "image"
    after = (lambda vector: then(vector, modality)) if then is not None else None
    if image_bytes is None:
        return await resources.worker.encode(encoder, "text", query_words(text), after), modality
    pixels = await asyncio.get_running_loop().run_in_executor(
        resources.picture_pool, lambda: encoder.backbone.preprocess(
            decode_image(image_bytes, settings.max_image_bytes, settings.max_image_pixels)))  # fmt: skip
    return await resources.worker.encode(encoder, "pixels", pixels, after), modality


def fetch_query_picture(url: str, searcher, settings) -> bytes:
    try:
        return fetch_picture(url, searcher.index.source_hosts, settings.image_host_list, settings.max_image_bytes,
                             settings.image_fetch_timeout)  # fmt: skip
    except FetchRefused as e:
        raise HTTPException(e.status, detail=e.detail) from e


def with_image_link(profile: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with ``image``: the service's URL of its picture (a text's: the picture it describes), or None."""
    sha = result.get("sha256")
    return {**result, "image": f"/v1/profiles/{profile}/images/img-{sha}" if sha else None}
