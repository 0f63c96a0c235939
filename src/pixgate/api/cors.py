"""CORS for the dialects whose documents call them from web pages (Yuecheng's browser
`fetch`, aichat's jQuery `$.ajax`), and only for their paths: the rest of the API keeps
the browser's same-origin protection."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# Headers a browser may send cross-origin to these dialects (Content-Type for JSON and
# multipart, aichat's apikey and sign, the language of error messages).
ALLOWED_HEADERS = ["Content-Type", "Authorization", "apikey", "sign", "Accept-Language"]


class PathCORSMiddleware:
    """Starlette's CORSMiddleware (preflight answers and response headers) applied to
    requests whose path starts with one of `prefixes`; other requests pass untouched."""

    def __init__(self, app: ASGIApp, prefixes: Iterable[str], **options: Any):
        self.app = app
        self.prefixes = tuple(prefixes)
        options.setdefault("allow_origins", ["*"])
        options.setdefault("allow_methods", ["GET", "POST", "OPTIONS"])
        options.setdefault("allow_headers", ALLOWED_HEADERS)
        options.setdefault("expose_headers", ["X-Request-ID", "Retry-After"])
        options.setdefault("max_age", 600)
        self.cors = CORSMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
