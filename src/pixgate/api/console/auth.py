"""Sign-up, login, logout (here or everywhere) and the language switch."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from pixgate.api.console.common import (
    LANG_COOKIE,
    ConsoleRoute,
    Session,
    console,
    form,
    logged_in,
    logged_out,
    page,
    refusal_text,
    set_cookie,
)
from pixgate.api.deps import client_ip
from pixgate.core.console import ConsoleRefusal
from pixgate.errors import PixgateError
from pixgate.messages_console import LANGUAGES

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


@router.get("/signup")
async def signup_form(request: Request) -> Response:
    return page(request, "signup.html", open=console(request).signup_open, values={})


@router.post("/signup")
async def signup(request: Request) -> Response:
    data = await form(request)
    try:
        new = await console(request).signup(
            data.get("name", ""), data.get("email", ""), data.get("password", "")
        )
    except ConsoleRefusal as exc:
        return page(
            request,
            "signup.html",
            exc.status,
            open=console(request).signup_open,
            values={"name": data.get("name", ""), "email": data.get("email", "")},
            error=refusal_text(request, exc),
            error_field=exc.field,
        )
    return logged_in(request, new)


@router.get("/login")
async def login_form(request: Request) -> Response:
    return page(request, "login.html", values={})


@router.post("/login")
async def login(request: Request) -> Response:
    data = await form(request)
    try:
        new = await console(request).login(
            data.get("login", ""), data.get("password", ""), client_ip(request)
        )
    except (ConsoleRefusal, PixgateError) as exc:  # login_failed, or rate_limited (429)
        response = page(
            request,
            "login.html",
            exc.status,
            values={"login": data.get("login", "")},
            error=refusal_text(request, exc),
        )
        if isinstance(exc, PixgateError):
            response.headers.update(exc.headers)
        return response
    return logged_in(request, new)


@router.post("/logout")
async def logout(request: Request, session: Session) -> Response:
    await form(request, session)
    await console(request).logout(session)
    return logged_out()


@router.post("/logout-everywhere")
async def logout_everywhere(request: Request, session: Session) -> Response:
    await form(request, session)
    await console(request).logout_everywhere(session)
    return logged_out()


@router.get("/lang/{code}")
async def switch_language(request: Request, code: str, next: str = "/console/") -> Response:
    """Remember the chosen language (a cookie) and go back to the page."""
    if not next.startswith("/console") or next.startswith("//"):
        next = "/console/"
    response = RedirectResponse(next, status_code=303)
    if code in LANGUAGES:
        set_cookie(request, response, LANG_COOKIE, code, 365 * 86400)
    return response
