"""Pure ASGI middleware: request ids, access logs and HTTP metrics."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixgate.metrics import Metrics

log = structlog.get_logger("pixgate.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RequestContextMiddleware:
    """Gives every request an id (the client's X-Request-ID if sane), echoes it on the
    response, binds it to logs, and records latency by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics, on_crash: Callable[[Request], Response]):
        self.app = app
        self.metrics = metrics
        self.on_crash = on_crash

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope["pixgate.request_id"] = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        start = time.perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # A bug must still reach the client as a clean 500 with the request id, and
            # never as a traceback.
            log.error("unhandled error", exc_info=exc)
            if not started:
                await self.on_crash(Request(scope))(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            self.metrics.http_latency.labels(method, template).observe(elapsed)
            if template not in ("/healthz", "/metrics"):
                log.info(
                    "request",
                    method=method,
                    path=template,
                    status=status,
                    ms=round(elapsed * 1000, 1),
                )
            structlog.contextvars.unbind_contextvars("request_id")
