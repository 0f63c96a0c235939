"""The workers of the deployment as the operator sees them (`GET /admin/workers`,
`pixgate workers`): each live worker with its host, device, models and current job, and
those that stopped heartbeating within the last hour, flagged not live. The rows are the
workers' own heartbeats (pixgate.queue.registry)."""

from __future__ import annotations

from pixgate.db import Database
from pixgate.queue import registry
from pixgate.queue.registry import WorkerInfo
from pixgate.settings import Settings

__all__ = ["Fleet", "WorkerInfo"]


class Fleet:
    def __init__(self, settings: Settings, db: Database):
        self._settings = settings
        self._db = db

    async def workers(self, with_dead: bool = True) -> list[WorkerInfo]:
        """Live workers, and with `with_dead` those dead within the last hour."""
        return await registry.live_workers(
            self._db,
            self._settings.worker_heartbeat_seconds,
            registry.DEAD_SHOWN if with_dead else None,
        )

    async def served_models(self) -> set[str]:
        """The models some live worker claims."""
        return await registry.served_models(self._db, self._settings.worker_heartbeat_seconds)
