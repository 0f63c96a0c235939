"""The columns of a new job row, shared by billed generations and free worker-side jobs."""

from __future__ import annotations

from typing import Any

from pixgate.db import ApiKey, utcnow


def queued_job(
    job_id: str,
    *,
    kind: str,
    model: str,
    request: dict[str, Any],
    n: int,
    seed: int,
    key: ApiKey | None = None,
    request_id: str | None = None,
    price_minor: int = 0,
    cap_reserved: bool = False,
) -> dict[str, Any]:
    """The columns of a new, queued job row (one place for what every queued job starts
    with: nothing produced, charged or attempted yet)."""
    return {
        "id": job_id,
        "key_id": key.id if key else None,
        "user_id": key.user_id if key else None,
        "request_id": request_id,
        "model": model,
        "kind": kind,
        "status": "queued",
        "request": request,
        "n": n,
        "seed": seed,
        "price_minor": price_minor,
        "cap_reserved": cap_reserved,
        "cost_minor": 0,
        "n_succeeded": 0,
        "attempts": 0,
        "created_at": utcnow(),
    }
