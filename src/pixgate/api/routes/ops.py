"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from pixgate.api.deps import core

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable, accepting requests")
async def readyz(request: Request) -> JSONResponse:
    app_core = core(request)
    checks: dict[str, str] = {}
    try:
        async with app_core.db.read() as s:
            await s.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    checks["accepting"] = "ok" if app_core.accepting else "shutting down"
    worker = app_core.worker
    if worker is not None:
        checks["worker"] = (
            "stopped" if not worker.alive else "ok" if worker.ready else "loading models"
        )
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    app_core = core(request)
    app_core.metrics.queue_depth.set(await app_core.queue.depth())
    return Response(generate_latest(app_core.metrics.registry), media_type=CONTENT_TYPE_LATEST)
