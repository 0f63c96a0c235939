"""The admin view of moderation: `GET /admin/moderation` lists refusals (newest first: the
key, the dialect, the field, the blocked term that matched or the image classifier's score,
the job, the time); `POST /admin/moderation/reload` reads `blocked_terms_file` again (as
SIGHUP does). Refusals cost nothing; this is where an operator reviews them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from pixgate.accounts.moderation import RefusalView
from pixgate.api.deps import admin, core
from pixgate.api.schemas import ListOf, documented
from pixgate.errors import invalid

router = APIRouter(prefix="/admin/moderation", tags=["admin"], dependencies=[Depends(admin)])


class RefusalList(ListOf):
    data: list[RefusalView]  # the domain's own record: one shape for the log and the API


class Reloaded(BaseModel):
    terms: int


@router.get("", summary="Moderation refusals, newest first", **documented(RefusalList))
async def list_refusals(
    request: Request,
    key: str | None = Query(default=None, description="Only this key's (its id)."),
    since: datetime | None = Query(default=None, description="Only refusals from then on."),
    before: int | None = Query(default=None, ge=1, description="Only ids below this (paging)."),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict:
    if since is not None and since.tzinfo is not None:  # naive means UTC already
        since = since.astimezone(UTC).replace(tzinfo=None)
    rows = await core(request).moderation.recent(limit, key, since, before)
    return {"object": "list", "data": [dataclasses.asdict(r) for r in rows]}


@router.post(
    "/reload", summary="Read blocked_terms_file again (as SIGHUP does)", **documented(Reloaded)
)
async def reload_terms(request: Request) -> dict:
    try:
        return {"terms": core(request).moderation.reload()}
    except ValueError as exc:
        raise invalid("blocked_terms_file", str(exc), str(exc)) from None
