"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from pixgate.api.deps import core
from pixgate.api.schemas import Health, Readiness, documented

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers", **documented(Health))
async def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable, accepting requests",
    **documented(Readiness, also={503: {"model": Readiness, "description": "Not ready."}}),
)
async def readyz(request: Request) -> JSONResponse:
    checks = await core(request).readiness()
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    return Response(await core(request).metrics_exposition(), media_type=CONTENT_TYPE_LATEST)
