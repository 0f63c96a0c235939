"""The API's own pages: `GET /` (what this server is and where to look next), `/docs`
(Swagger UI) and `/redoc`, served with their scripts from the installed `fastapi-offline`
package rather than a CDN, so they work on a machine without internet, and the OpenAPI
document with the request bodies the routes read themselves.

(`swagger-ui-bundle` ships Swagger UI 4, which cannot render the OpenAPI 3.1 documents
FastAPI writes; `fastapi-offline` ships Swagger UI 5 and ReDoc 2.)
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from pixgate import __version__
from pixgate.api.schemas import ServiceInfo, add_request_schemas, documented

ASSETS = "/static/docs"
DOCS, REDOC, OAUTH2_REDIRECT = "/docs", "/redoc", "/docs/oauth2-redirect"


def _without_422(document: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents a 422 for every route with parameters; pixgate answers bad
    parameters with a 400 in the dialect's own error shape (`app._validation_error`)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    text = str(document.get("paths"))
    for name in ("HTTPValidationError", "ValidationError"):
        if f"/{name}'" not in text:
            schemas.pop(name, None)
    return document


def install(app: FastAPI) -> None:
    """Add the pages to `app` (created with `docs_url=None, redoc_url=None`)."""
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = _without_422(add_request_schemas(document))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/", summary="What this server is, and where to go next", **documented(ServiceInfo))
    async def root(request: Request) -> JSONResponse:
        root_path = request.scope.get("root_path", "")
        links = {
            "docs": f"{root_path}{DOCS}",
            "openapi": f"{root_path}{openapi_url}",
            "models": f"{root_path}/v1/models",
            "health": f"{root_path}/healthz",
        }
        return JSONResponse({"name": "pixgate", "version": __version__, "links": links})

    @app.get(DOCS, include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root_path}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root_path}{OAUTH2_REDIRECT}",
            swagger_js_url=f"{root_path}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root_path}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root_path}{ASSETS}/favicon.png",
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root_path}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root_path}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root_path}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
