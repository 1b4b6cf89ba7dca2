"""Profiles, their items and pictures, and their adapter's evaluation."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from qualia import report, workspace
from qualia.errors import CorruptArtifact
from qualia.workspace import Workspace

from service.deps import ProfileDep, ResourcesDep, ScopeDep, WorkspaceDep, answers, key_scope, open_corpus
from service.resources import Resources

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/profiles", tags=["profiles"], dependencies=[Depends(key_scope)],
                   responses=answers(401, 503))

IMAGE_ID = re.compile(r"(?:img-)?([0-9a-f]{64})")
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}


@router.get("")
def list_profiles(ws: WorkspaceDep, scope: ScopeDep, resources: ResourcesDep) -> dict[str, Any]:
    """Profiles with a built index: their adapter and index versions and index counts (a key sees only its own)."""
    profiles = []
    for name in ws.list_profiles():
        if scope is not None and name != scope:
            continue
        if ws.latest_index(name) is None:
            continue
        try:
            index = resources.index(name)  # the version search answers from (a damaged newest is passed over)
        except CorruptArtifact as e:
            log.warning("skipping profile %s: %s", name, e)
            continue
        manifest = index.manifest
        profiles.append(
            {
                "name": name,
                "adapter": manifest.get("adapter_version"),
                "index": index.version,
                "backbone": manifest.get("backbone"),
                "counts": {"total": manifest["count"], **manifest.get("count_by_modality", {})},
            }
        )
    return {"profiles": profiles}


@router.get("/{profile}/items/{item_id}", responses=answers(404, 409))
def get_item(profile: ProfileDep, item_id: str, ws: WorkspaceDep, resources: ResourcesDep) -> dict[str, Any]:
    """A corpus item (``substack:post:123``), or an index row (``img-<sha256>``, ``txt-...``) with its item."""
    with open_corpus(ws, profile) as corpus:
        if item_id.startswith(("img-", "txt-")):
            row = resources.index(profile).row(item_id)
            if row is None:
                raise HTTPException(404, detail=f"no {item_id!r} in the index of {profile!r}")
            return {**row, "item": corpus.item(row["item_id"]) if row.get("item_id") else None}
        item = corpus.item(item_id)
    if item is None:
        raise HTTPException(404, detail=f"no item {item_id!r} in {profile!r}")
    return item


@router.get(
    "/{profile}/images/{image_id}",
    response_class=FileResponse,
    responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}, **answers(404)},
)
def get_image(profile: ProfileDep, image_id: str, ws: WorkspaceDep) -> FileResponse:
    """A picture's bytes, by ``img-<sha256>`` (or the bare hash), or the first picture of an item id."""
    with open_corpus(ws, profile) as corpus:
        match = IMAGE_ID.fullmatch(image_id)
        if match:
            sha = match.group(1)
        else:
            item = corpus.item(image_id)
            stored = [r["sha256"] for r in (item or {}).get("images", []) if r.get("sha256")]
            if not stored:
                raise HTTPException(404, detail=f"no image {image_id!r} in {profile!r}")
            sha = stored[0]
        # The images table is per profile: a hash another profile stored is not found here.
        row = corpus.image(sha)
    if row is None:
        raise HTTPException(404, detail=f"no image {image_id!r} in {profile!r}")
    images_root = ws.images_dir.resolve()
    resolved = (images_root / row["path"]).resolve()
    if not resolved.is_relative_to(images_root) or not resolved.is_file():
        raise HTTPException(404, detail=f"the file of image {image_id!r} is missing")
    return FileResponse(
        resolved,
        media_type=MEDIA_TYPES.get(row["format"], "application/octet-stream"),
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


def report_version(profile: str, ws: Workspace, resources: Resources) -> str:
    """The adapter the profile's index was built with, else its newest adapter (what the report describes)."""
    version = None
    if ws.latest_index(profile) is not None:
        try:
            version = resources.index(profile).manifest.get("adapter_version")
        except CorruptArtifact as e:
            log.warning("report of %s: %s", profile, e)
    version = version or workspace.latest_version(ws.adapters_dir(profile))
    if version is None:
        raise HTTPException(404, detail=f"profile {profile!r} has no trained adapter")
    return version


@router.get("/{profile}/report", responses=answers(404, 409))
def get_report(profile: ProfileDep, ws: WorkspaceDep, resources: ResourcesDep) -> dict[str, Any]:
    """The evaluation (metrics.json, at the top level) of the adapter the profile's index was built with, else of
    its newest adapter; beside it the adapter's ``version``, how it was ``training``-ed, the ``corpus`` counts (items
    by source and degree, pictures, edges) and the ``plots`` training drew, each with its ``url``."""
    version = report_version(profile, ws, resources)
    body = report.adapter_report(ws, profile, version)
    body["plots"] = [{**plot, "url": f"{router.prefix}/{profile}/report/plots/{plot['name']}"} for plot in body["plots"]]
    return body


@router.get(
    "/{profile}/report/plots/{name}",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, **answers(404)},
)
def get_report_plot(profile: ProfileDep, name: str, ws: WorkspaceDep, resources: ResourcesDep) -> FileResponse:
    """A plot training drew for the report's adapter (``loss_curve.png``, ``modality_gap.png``)."""
    path = report.plot_path(ws, profile, report_version(profile, ws, resources), name)
    # The report's adapter changes with the next index or training: ask again each time (the ETag keeps it cheap).
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})
