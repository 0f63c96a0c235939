"""Per-request helpers shared by routers: the core object, the client's language, the
request id, the public base URL for links, and the callers as FastAPI dependencies.

Routes declare who may call them in their signature (`caller: Authenticated`), and the
admin router guards every route it holds (`APIRouter(dependencies=[Depends(admin)])`), so
no handler has to remember a line. Authentication reads headers only: declared before a
body dependency, it refuses an unknown key before a byte of the body is read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from pixgate.accounts.keys import Caller
from pixgate.core.moderation import current_dialect
from pixgate.core.service import Pixgate
from pixgate.errors import PixgateError, pick_language


def core(request: Request) -> Pixgate:
    return request.app.state.pixgate


def language(request: Request) -> str:
    return pick_language(request.headers.get("accept-language"))


def request_id(request: Request) -> str | None:
    return request.scope.get("pixgate.request_id")


def public_base(request: Request) -> str:
    configured = core(request).public_url
    return (configured or str(request.base_url)).rstrip("/")


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def authenticated(request: Request) -> Caller:
    """The Bearer key's caller (401/403/429 otherwise)."""
    return await core(request).identity.authenticate(bearer_token(request), client_ip(request))


async def admin(caller: Annotated[Caller, Depends(authenticated)]) -> Caller:
    """Like `authenticated`, and the account must have the admin role."""
    if caller.user.role != "admin":
        raise PixgateError("admin_required")
    return caller


Core = Annotated[Pixgate, Depends(core)]
Authenticated = Annotated[Caller, Depends(authenticated)]
Admin = Annotated[Caller, Depends(admin)]


def dialect(name: str) -> Any:
    """A router dependency naming the API its requests come in through, for the
    moderation log and the job (core/moderation.current_dialect)."""

    async def mark() -> None:
        current_dialect.set(name)

    return Depends(mark)
