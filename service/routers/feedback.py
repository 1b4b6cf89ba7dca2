"""``POST /v1/profiles/{profile}/feedback``: a person's "fits / does not fit" mark on a search result,
stored in the profile's corpus for its next training (``qualia.feedback``)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from qualia.feedback import record
from qualia.text import MAX_QUERY_CHARS

from service.deps import CallerDep, ProfileDep, ResourcesDep, WorkspaceDep, answers, key_scope

router = APIRouter(prefix="/v1/profiles", tags=["feedback"], dependencies=[Depends(key_scope)],
                   responses=answers(401, 503))


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS,
                       description="the query's words (for a picture query, words that describe it)")
    id: str = Field(min_length=1, max_length=80, description="the result marked: an index row, img-... or txt-...")
    fits: StrictBool = Field(description="true: the result fits the query; false: it does not")

    @field_validator("query")
    @classmethod
    def has_words(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is blank")
        return value


class Mark(BaseModel):
    profile: str
    query: str = Field(description="the query's words as stored (whitespace collapsed)")
    id: str
    modality: Literal["image", "text"]
    fits: bool
    who: str = Field(description="the API key's public prefix, or 'anonymous' when the server has no keys")
    marked_at: str = Field(description="when, UTC, ISO 8601")
    replaced: bool = Field(description="whether it replaced this caller's earlier mark on this result for this query")


@router.post(
    "/{profile}/feedback", status_code=201, response_model=Mark,
    responses={200: {"model": Mark, "description": "the caller's earlier mark on this result for this query, replaced"},
               **answers(404, 409, 413, 422)},
)  # fmt: skip
def post_feedback(
    body: FeedbackRequest, profile: ProfileDep, who: CallerDep, ws: WorkspaceDep, resources: ResourcesDep,
    response: Response,
) -> Any:
    """Store that result ``id`` of the profile's index fits ``query`` (or not). 201 for a new mark, 200
    when it replaces the caller's own earlier mark on that result for that query: marking twice never
    counts twice. The next ``qualia train`` learns from it."""
    row = resources.index(profile).row(body.id)
    if row is None:
        raise HTTPException(404, detail=f"no {body.id!r} in the index of {profile!r}")
    mark, new = record(ws, profile, who, body.query, row, body.fits)
    if not new:
        response.status_code = 200
    return {
        "profile": profile,
        "query": mark["query"],
        "id": mark["target"],
        "modality": mark["modality"],
        "fits": mark["fits"],
        "who": mark["who"],
        "marked_at": datetime.fromtimestamp(mark["marked_at"], timezone.utc).isoformat(timespec="seconds"),
        "replaced": not new,
    }
