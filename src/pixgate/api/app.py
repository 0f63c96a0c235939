"""The FastAPI application: routers, error rendering, the API's own pages (`pixgate.api.docs`)
and the lifespan that starts the core (migrations, worker, housekeeping) and stops it
gracefully."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from pixgate import __version__
from pixgate.api import console, docs
from pixgate.api.cors import PathCORSMiddleware
from pixgate.api.deps import language, request_id
from pixgate.api.dialects import aichat, openai, openai_edits, volcengine, yuecheng
from pixgate.api.middleware import RequestContextMiddleware
from pixgate.api.routes import (
    account,
    admin,
    channels,
    files,
    labels,
    moderation,
    ops,
    tasks,
    topups,
    workers,
)
from pixgate.core.service import Pixgate
from pixgate.errors import PixgateError
from pixgate.logs import configure_logging
from pixgate.settings import Settings

log = structlog.get_logger("pixgate.api")

ErrorRenderer = Callable[[PixgateError, str], Response]

# Path prefix -> the dialect that renders errors there. Longest prefix wins; OpenAI's shape
# is the default for everything else.
ERROR_RENDERERS: dict[str, ErrorRenderer] = {
    "/": openai.render_error,
    **dict.fromkeys(yuecheng.PATH_PREFIXES, yuecheng.render_error),
    **dict.fromkeys(aichat.PATH_PREFIXES, aichat.render_error),
    # POST / (Volcengine's own path) renders its errors itself: "/" is everyone's prefix.
    **dict.fromkeys(volcengine.PATH_PREFIXES, volcengine.render_error),
}


def render(request: Request, err: PixgateError) -> Response:
    path = request.url.path
    prefix = max((p for p in ERROR_RENDERERS if path.startswith(p)), key=len)
    return ERROR_RENDERERS[prefix](err, language(request))


def create_app(settings: Settings, start_core: bool = True) -> FastAPI:
    configure_logging(settings.log_level, settings.log_json)
    core = Pixgate(settings)
    core.task_renderer = tasks.webhook_renderer(core)  # API nodes deliver task webhooks

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if start_core:
            await core.start()
        log.info("pixgate ready", models=core.model_names(), demo=settings.demo)
        try:
            yield
        finally:
            if start_core:
                await core.stop()

    app = FastAPI(
        title="pixgate",
        version=__version__,
        description="Self-hosted image-generation API (OpenAI / SiliconFlow wire format).",
        lifespan=lifespan,
        docs_url=None,  # served from the package by `docs.install`, not from a CDN
        redoc_url=None,
    )
    app.state.pixgate = core
    docs.install(app)

    @app.exception_handler(PixgateError)
    async def _pixgate_error(request: Request, exc: PixgateError) -> Response:
        return render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"][1:]) or "query"
        detail = first.get("msg", "invalid")
        return render(
            request,
            PixgateError(
                "invalid_value", param=field, args_={"detail": detail, "detail_zh": detail}
            ),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            err = PixgateError("method_not_allowed", args_={"method": request.method})
        elif exc.status_code == 404:
            err = PixgateError("not_found", args_={"path": request.url.path})
        else:  # e.g. a malformed multipart body that Starlette refuses before any handler
            detail = str(exc.detail)
            err = PixgateError(
                "invalid_value", param="body", args_={"detail": detail, "detail_zh": detail}
            )
        return render(request, err)

    def _crash_response(request: Request) -> Response:
        rid = request_id(request) or "-"
        return render(request, PixgateError("internal_error", args_={"request_id": rid}))

    app.include_router(openai.router)
    app.include_router(openai_edits.router)
    app.include_router(yuecheng.router)
    app.include_router(aichat.router)
    app.include_router(volcengine.router)
    app.include_router(account.router)
    app.include_router(tasks.router)
    app.include_router(admin.router)
    app.include_router(topups.router)
    app.include_router(channels.router)
    app.include_router(moderation.router)
    app.include_router(workers.router)
    app.include_router(labels.router)
    app.include_router(files.router)
    app.include_router(ops.router)
    console.install(app)  # /console: pages, static files, security headers
    app.add_middleware(RequestContextMiddleware, metrics=core.metrics, on_crash=_crash_response)
    # Outermost, so even a crash's 500 carries the CORS headers browsers need to read it.
    app.add_middleware(
        PathCORSMiddleware, prefixes=(*yuecheng.PATH_PREFIXES, *aichat.PATH_PREFIXES)
    )
    return app
