"""What every console page shares: templates with the `t()` helper, the language
(cookie, else Accept-Language), the session cookie, CSRF tokens on every form, and a
route class that turns refusals into HTML pages (never the API's JSON errors)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from pixgate.accounts.sessions import ActiveSession, NewSession
from pixgate.api.deps import core
from pixgate.core.console import Console, ConsoleRefusal
from pixgate.errors import PixgateError, pick_language
from pixgate.messages_console import LANGUAGES, t
from pixgate.money import from_minor

SESSION_COOKIE = "pixgate_session"
CSRF_COOKIE = "pixgate_csrf"  # forms shown before login (sign-up, login): double submit
LANG_COOKIE = "pixgate_lang"
COOKIE_PATH = "/console"

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


class LoginRequired(Exception):
    """No live session: the page redirects to the login form."""


class PageError(Exception):
    """A page that cannot be shown: an error page with this status and message key."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def console(request: Request) -> Console:
    return core(request).console


def language(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return pick_language(request.headers.get("accept-language"))


def is_https(request: Request) -> bool:
    """Whether cookies must be Secure: the request came over HTTPS, or the deployment's
    public URL is HTTPS (a TLS-terminating proxy in front)."""
    public = core(request).public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def money(minor: int) -> str:
    return str(from_minor(minor))


async def current_session(request: Request) -> ActiveSession:
    session = await console(request).session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired()
    request.state.console_session = session
    return session


Session = Annotated[ActiveSession, Depends(current_session)]


def csrf_token(request: Request) -> str:
    session = getattr(request.state, "console_session", None)
    if session is not None:
        return session.csrf_token
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if token is None:
        token = request.state.new_csrf = secrets.token_urlsafe(32)
    return token


async def form(request: Request, session: ActiveSession | None = None) -> dict[str, str]:
    """The POSTed form, after its CSRF token is checked (403 when wrong or missing)."""
    data = await request.form()
    sent = data.get("csrf")
    expected = session.csrf_token if session is not None else request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise PageError(403, "csrf_failed")
    return {k: v for k, v in data.items() if isinstance(v, str)}


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = language(request)
    session = getattr(request.state, "console_session", None)
    values = {
        "t": lambda key, **kw: t(key, lang, **kw),
        "lang": lang,
        "session": session,
        "user": session.user if session else None,
        "csrf": csrf_token(request),
        "money": money,
        "path": request.url.path,
        "currency": console(request).currency,
        **context,
    }
    response = TEMPLATES.TemplateResponse(request, template, values, status_code=status)
    new = getattr(request.state, "new_csrf", None)
    if new is not None:
        set_cookie(request, response, CSRF_COOKIE, new, None)
    return response


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=is_https(request),
        httponly=True,
        samesite="lax",
    )


def logged_in(request: Request, new: NewSession) -> Response:
    """Redirect to the dashboard with the new session's cookie."""
    response = RedirectResponse("/console/", status_code=303)
    max_age = int(console(request).policy.max_days * 86400)
    set_cookie(request, response, SESSION_COOKIE, new.token, max_age)
    return response


def logged_out() -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def refusal_text(request: Request, exc: ConsoleRefusal | PixgateError) -> str:
    if isinstance(exc, PixgateError):
        return exc.message(language(request))
    return t(exc.message, language(request))


class ConsoleRoute(APIRoute):
    """Console routes answer in HTML: a missing session redirects to the login form, a
    refusal is an error page in the user's language."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return logged_out()
            except PageError as exc:
                return page(
                    request, "error.html", exc.status, message=t(exc.message, language(request))
                )
            except (ConsoleRefusal, PixgateError) as exc:
                return page(request, "error.html", exc.status, message=refusal_text(request, exc))

        return run
