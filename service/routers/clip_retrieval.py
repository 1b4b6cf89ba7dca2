"""clip-retrieval's back-end API over qualia's profiles: ``POST /knn-service``, ``GET /indices-list``,
``POST /metadata`` with the request and response fields of clip-retrieval 2.45 (``indice_name`` is the
profile), so its ``ClipClient`` and its front end work against qualia unchanged.

Leniency where they need it: ``ClipClient`` posts JSON without a Content-Type and sends every field, the
unused ones as ``null``; the front end sends numbers as strings. Fields qualia has no use for
(``use_mclip``, ``use_safety_model``, ``use_violence_detector``, ``aesthetic_*``) are accepted and
ignored; ``deduplicate`` drops results whose picture was already given.

Result ids are numbers, as clip-retrieval's are: the first 13 hex digits of the sha256 of qualia's row
id (52 bits, exact in JavaScript), so an id stays the same across index versions and ``/metadata``
answers for it after a rebuild. Metadata: ``caption`` (the row's words), ``url`` (the service's own
URL of the picture, absolute, so a page elsewhere can show it; a picture not stored: where it was
found), and qualia's ``qualia_id``, ``modality``, ``source_url`` and ``degree``.
"""

from __future__ import annotations

import hashlib
import json
import math
import weakref
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from qualia import workspace

from service.deps import ResourcesDep, ScopeDep, SettingsDep, WorkspaceDep, answers, key_scope
from service.queries import decode_base64, fetch_query_picture, query_vector, with_image_link

router = APIRouter(tags=["clip-retrieval"], dependencies=[Depends(key_scope)], responses=answers(401, 503))
_NUMBERED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # index version -> {numeric id: row id}

MAX_RESULTS = 1000


def numeric_id(row_id: str) -> int:
    return int(hashlib.sha256(row_id.encode()).hexdigest()[:13], 16)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as e:
        raise HTTPException(400, detail=f"the body is not JSON: {str(e)[:80]}") from e
    if not isinstance(body, dict):
        raise HTTPException(400, detail="the body must be a JSON object")
    return body


def _count(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(float(value)) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    except (ValueError, OverflowError):
        number = None
    if number is None or not 1 <= number <= MAX_RESULTS:
        raise HTTPException(422, detail=f"{name} must be a number from 1 to {MAX_RESULTS}")
    return number


def _profile(body: dict[str, Any], ws: workspace.Workspace, scope: str | None) -> str:
    name = body.get("indice_name")
    if not isinstance(name, str) or not workspace.PROFILE_NAME.fullmatch(name):
        raise HTTPException(404, detail=f"no index {str(name)[:80]!r}")
    if (scope is not None and name != scope) or ws.latest_index(name) is None:
        raise HTTPException(404, detail=f"no index {name!r}")
    return name


def _metadata(request: Request, profile: str, row: dict[str, Any]) -> dict[str, Any]:
    image = with_image_link(profile, row)["image"]
    url = str(request.base_url).rstrip("/") + image if image else row.get("image_url")
    return {"url": url, "caption": row.get("text"), "qualia_id": row["id"], "modality": row["modality"],
            "source_url": row.get("source_url"), "degree": row.get("degree")}  # fmt: skip


@router.get("/indices-list")
def indices_list(ws: WorkspaceDep, scope: ScopeDep) -> list[str]:
    """The profiles with an index (a key sees only its own)."""
    return [name for name in ws.list_profiles() if ws.latest_index(name) is not None and scope in (None, name)]


@router.post("/knn-service", responses=answers(400, 403, 404, 408, 409, 413, 422))
async def knn_service(request: Request, ws: WorkspaceDep, scope: ScopeDep, settings: SettingsDep,
                      resources: ResourcesDep) -> list[dict[str, Any]]:  # fmt: skip
    """Nearest pictures (``modality: image``) or texts (``text``) of a profile to ``text``, ``image``
    (base64), ``image_url`` or ``embedding_input``; each result ``{id, similarity, url, caption, ...}``."""
    body = await _json_object(request)
    profile = _profile(body, ws, scope)
    modality = body.get("modality") or "image"
    if modality not in ("image", "text"):
        raise HTTPException(422, detail="modality must be 'image' or 'text'")
    num_images = _count(body, "num_images", 40)
    wanted = max(num_images, _count(body, "num_result_ids", num_images))
    searcher, encoder = await run_in_threadpool(resources.searcher_and_encoder, profile)
    text, image, image_url, embedding = (body.get(k) for k in ("text", "image", "image_url", "embedding_input"))
    if text not in (None, ""):
        if not isinstance(text, str):
            raise HTTPException(422, detail="text must be a string")
        vector, query_modality = await query_vector(resources, encoder, settings, text, None)
    elif image not in (None, "") or image_url not in (None, ""):
        if image not in (None, ""):
            if not isinstance(image, str):
                raise HTTPException(422, detail="image must be a base64 string")
            data = decode_base64(image, settings)
        else:
            if not isinstance(image_url, str):
                raise HTTPException(422, detail="image_url must be a string")
            data = await run_in_threadpool(fetch_query_picture, image_url, searcher, settings)
        vector, query_modality = await query_vector(resources, encoder, settings, None, data)
    elif embedding is not None:
        vector, query_modality = _embedding(embedding, searcher.index.dim), None
    else:
        raise HTTPException(422, detail="give one of text, image, image_url or embedding_input")
    if query_modality is not None:
        found = await run_in_threadpool(searcher.search_vector, vector, query_modality, wanted, modality)
    else:
        found = await run_in_threadpool(searcher.index.search, vector, wanted, modality)
    if body.get("deduplicate"):
        found = _deduplicated(found)
    return [{**_metadata(request, profile, r), "id": numeric_id(r["id"]), "similarity": r["score"]}
            for r in found[:num_images]]  # a result holds what the metadata shows of its row


def _embedding(value: Any, dim: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != dim or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in value):  # fmt: skip
        raise HTTPException(422, detail=f"embedding_input must be a list of {dim} finite numbers")
    vector = np.asarray(value, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if norm == 0:
        raise HTTPException(422, detail="embedding_input must not be all zeros")
    return vector / norm


def _deduplicated(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, kept = set(), []
    for result in found:
        sha = result.get("sha256")
        if sha and sha in seen:
            continue
        seen.add(sha)
        kept.append(result)
    return kept


@router.post("/metadata", responses=answers(400, 404, 422))
async def metadata(request: Request, ws: WorkspaceDep, scope: ScopeDep, resources: ResourcesDep) -> list[dict[str, Any]]:
    """``{ids, indice_name}`` -> ``[{id, metadata}]`` for the ids ``/knn-service`` gave (unknown ids: no metadata)."""
    body = await _json_object(request)
    profile = _profile(body, ws, scope)
    ids = body.get("ids")
    if not isinstance(ids, list) or len(ids) > MAX_RESULTS:
        raise HTTPException(422, detail=f"ids must be a list of at most {MAX_RESULTS} numbers")
    index = await run_in_threadpool(resources.index, profile)
    by_number = _numbered_rows(index)
    answer = []
    for item in ids:
        try:
            number = int(item)
        except (TypeError, ValueError, OverflowError):
            raise HTTPException(422, detail="ids must be numbers") from None
        row = index.row(by_number[number]) if number in by_number else None
        answer.append({"id": number, "metadata": _metadata(request, profile, row) if row else None})
    return answer


def _numbered_rows(index: Any) -> dict[int, str]:
    """numeric id -> row id of one index version."""
    if index not in _NUMBERED:  # one index version, one map, built on first use, gone with the version
        _NUMBERED[index] = {numeric_id(row_id): row_id for row_id in index.rows.ids}
    return _NUMBERED[index]
