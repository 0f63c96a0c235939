"""The admin view of workers: `GET /admin/workers` lists the workers that heartbeat into
the database (id, host, pid, device, the models each claims, the job it runs now, when it
started and was last seen), live ones first, then those that stopped heartbeating within
the last hour (`live: false`). A model no live worker serves waits in the queue."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from pixgate.api.deps import admin, core
from pixgate.api.schemas import ListOf, documented

router = APIRouter(prefix="/admin/workers", tags=["admin"], dependencies=[Depends(admin)])


class WorkerState(BaseModel):
    id: str
    host: str
    pid: int
    device: str
    models: list[str]
    current_job_id: str | None
    running: int
    started_at: datetime
    last_seen: datetime
    live: bool


class WorkerList(ListOf):
    data: list[WorkerState]
    served_models: list[str]


@router.get("", summary="Workers and the models they serve", **documented(WorkerList))
async def list_workers(
    request: Request,
    dead: bool = Query(default=True, description="Also workers dead within the last hour."),
) -> dict:
    workers = await core(request).fleet.workers(with_dead=dead)
    workers.sort(key=lambda w: not w.live)  # live first, each group oldest first
    served = sorted({m for w in workers if w.live for m in w.models})
    return {
        "object": "list",
        "data": [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "device": w.device,
                "models": w.models,
                "current_job_id": w.current_job_id,
                "running": w.running,
                "started_at": w.started_at.isoformat(),
                "last_seen": w.last_seen.isoformat(),
                "live": w.live,
            }
            for w in workers
        ],
        "served_models": served,
    }
