"""A key owner's view of their jobs: status and progress, and cancelling."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request

from pixgate.api.context import authenticated, core
from pixgate.db import Job
from pixgate.money import from_minor

router = APIRouter(tags=["jobs"])


def job_json(job: Job) -> dict:
    return {
        "id": job.id,
        "object": "job",
        "model": job.model,
        "kind": job.kind,
        "status": job.status,
        "progress": round(job.progress or 0.0, 3),
        "n": job.n,
        "images_produced": job.n_succeeded,
        "cost": str(from_minor(job.cost_minor)),
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


@router.get("/v1/jobs", summary="The account's jobs, newest first")
async def list_jobs(
    request: Request,
    status: Literal["queued", "running", "succeeded", "failed"] | None = None,
    limit: int = Query(default=20, ge=1, le=100),
) -> dict:
    caller = await authenticated(request)
    rows = await core(request).queue.recent(caller.user.id, status, limit)
    return {"object": "list", "data": [job_json(j) for j in rows]}


@router.get("/v1/jobs/{job_id}", summary="A job's status and progress")
async def get_job(job_id: str, request: Request) -> dict:
    return job_json(await core(request).task(await authenticated(request), job_id))


@router.post("/v1/jobs/{job_id}/cancel", summary="Cancel a queued or running job (refunded)")
async def cancel_job(job_id: str, request: Request) -> dict:
    caller = await authenticated(request)
    return job_json(await core(request).cancel_task(caller, job_id))
