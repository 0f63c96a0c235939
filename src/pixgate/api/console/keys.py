"""The user's own API keys: list, create (shown once), disable and re-enable."""

from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from pixgate.accounts.keys import MAX_IMAGE_CAP
from pixgate.api.console.common import ConsoleRoute, Session, console, form, page, refusal_text
from pixgate.core.console import ConsoleRefusal
from pixgate.db import utcnow
from pixgate.errors import PixgateError

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


async def _keys_page(request: Request, session, status: int = 200, **context) -> Response:
    rows = await console(request).keys(session.user)
    return page(request, "keys.html", status, keys=rows, now=utcnow(), **context)


def _cap(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > MAX_IMAGE_CAP:
        raise ConsoleRefusal("cap_invalid", field="image_cap")
    return int(text)


def _expiry(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time())
    except ValueError as exc:
        raise ConsoleRefusal("expires_invalid", field="expires") from exc


@router.get("/keys")
async def list_keys(request: Request, session: Session) -> Response:
    return await _keys_page(request, session)


@router.post("/keys")
async def create_key(request: Request, session: Session) -> Response:
    data = await form(request, session)
    name = data.get("name", "").strip()[:200]
    try:
        created = await console(request).create_key(
            session.user, name, _cap(data.get("image_cap", "")), _expiry(data.get("expires", ""))
        )
    except (ConsoleRefusal, PixgateError) as exc:
        return await _keys_page(
            request, session, exc.status, error=refusal_text(request, exc), values=data
        )
    return await _keys_page(request, session, created=created)


@router.post("/keys/{key_id}/disable")
async def disable_key(request: Request, session: Session, key_id: str) -> Response:
    await form(request, session)
    await console(request).set_key_enabled(session.user, key_id, False)
    return RedirectResponse("/console/keys", status_code=303)


@router.post("/keys/{key_id}/enable")
async def enable_key(request: Request, session: Session, key_id: str) -> Response:
    await form(request, session)
    await console(request).set_key_enabled(session.user, key_id, True)
    return RedirectResponse("/console/keys", status_code=303)
