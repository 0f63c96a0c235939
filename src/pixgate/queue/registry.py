"""Workers that say what they serve: each running worker keeps one row in `workers` (id,
host, pid, device, the models it claims, the job it runs now, when it started, when it
was last seen).

A worker inserts its row when it starts, refreshes `last_seen` (and its current job and
device) every `worker_heartbeat_seconds`, and deletes the row when it stops cleanly. A
worker is live while its row was seen within `LIVE_HEARTBEATS` heartbeats; a row not seen
for `PRUNE_AFTER` is a worker that died long ago and is deleted by the next heartbeat of
any worker.

What reads the rows: the admin view (`GET /admin/workers`, `pixgate workers`), a queued
task's status (`waiting: no live worker serves model X`), and housekeeping, which fails
(free) the queued jobs that no live worker serves once they have waited
`generation_timeout_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, insert, select, update

from pixgate.backends import backend_kind
from pixgate.db import Database, Job, WorkerRow, utcnow
from pixgate.queue.claims import MARK_KIND
from pixgate.queue.jobs import JobQueue
from pixgate.spec.catalog import ModelSpec

log = structlog.get_logger("pixgate.queue.registry")

LIVE_HEARTBEATS = 3  # a worker not seen for this many heartbeats is not live
PRUNE_AFTER = timedelta(days=1)  # rows of workers not seen for this long are deleted
DEAD_SHOWN = timedelta(hours=1)  # the admin view lists workers dead this recently


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as its row (and the job table) tells."""

    id: str
    host: str
    pid: int
    device: str
    models: list[str]
    current_job_id: str | None  # the oldest job it runs now (read from the job table)
    running: int  # jobs it runs now (a relay lane runs many at once)
    started_at: datetime
    last_seen: datetime
    live: bool


def machine_device(specs: Iterable[ModelSpec]) -> str:
    """What the worker runs its models on: `cuda`/`mps`/`cpu` for diffusers models (a
    model's own `device`, or the best one this machine has), `cpu` for fake ones, `relay`
    for upstream channels; several joined by commas. `auto` until the engine is imported:
    torch is not imported just to say so (the first job or the preload imports it, and
    the next heartbeat reports the device)."""
    devices: set[str] = set()
    for spec in specs:
        kind = backend_kind(spec)
        if kind == "channel":
            devices.add("relay")
        elif kind == "fake":
            devices.add("cpu")
        elif spec.device != "auto":
            devices.add(spec.device)
        elif "torch" in sys.modules:
            loader = importlib.import_module("pixgate.backends.diffusers.loader")
            devices.add(loader.pick_device())
        else:
            devices.add("auto")
    return ",".join(sorted(devices)) or "none"


def _current_job(worker_id: str):
    """The oldest running job of the worker, as a scalar subquery (None when idle)."""
    return (
        select(Job.id)
        .where(Job.worker_id == worker_id, Job.status == "running")
        .order_by(Job.started_at, Job.id)
        .limit(1)
        .scalar_subquery()
    )


class Registration:
    """One worker's row: inserted by `start`, refreshed by a heartbeat task, deleted by
    `stop`. A row that vanished (pruned after a long suspension, deleted by hand) is
    inserted again at the next heartbeat."""

    def __init__(
        self,
        db: Database,
        worker_id: str,
        specs: Iterable[ModelSpec],
        heartbeat_seconds: float,
    ):
        self.db = db
        self.id = worker_id
        self.specs = list(specs)
        self.models = sorted(spec.name for spec in self.specs)
        self.heartbeat_seconds = heartbeat_seconds
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = utcnow()
        self._device: str | None = None  # known once it is not `auto`
        self._task: asyncio.Task | None = None

    def device(self) -> str:
        if self._device is None:
            device = machine_device(self.specs)[:64]
            if "auto" not in device.split(","):
                self._device = device
            return device
        return self._device

    def _row(self) -> dict:
        now = utcnow()
        return {
            "id": self.id,
            "host": self.host[:255],
            "pid": self.pid,
            "device": self.device(),
            "models": self.models,
            "current_job_id": None,
            "started_at": self.started_at,
            "last_seen": now,
        }

    async def start(self) -> None:
        """Insert the row (before the worker's first claim is visible to anyone asking
        what is served) and start the heartbeat."""
        async with self.db.write() as s:
            await s.execute(delete(WorkerRow).where(WorkerRow.id == self.id))
            await s.execute(insert(WorkerRow).values(**self._row()))
        log.info("worker registered", worker_id=self.id, models=self.models)
        self._task = asyncio.create_task(self._heartbeat(), name="pixgate-worker-heartbeat")

    async def beat(self) -> None:
        """Say the worker is alive, what it runs now and on what; prune long-dead rows."""
        now = utcnow()
        async with self.db.write() as s:
            result = await s.execute(
                update(WorkerRow)
                .where(WorkerRow.id == self.id)
                .values(
                    last_seen=now,
                    current_job_id=_current_job(self.id),
                    device=self.device(),
                )
            )
            if result.rowcount == 0:
                row = self._row() | {"current_job_id": _current_job(self.id)}
                await s.execute(insert(WorkerRow).values(**row))
            await s.execute(delete(WorkerRow).where(WorkerRow.last_seen < now - PRUNE_AFTER))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.beat()
            except Exception:  # a database hiccup: two more beats before anyone minds
                log.warning("worker heartbeat failed", worker_id=self.id, exc_info=True)

    async def stop(self) -> None:
        """Stop the heartbeat and delete the row (a clean stop: the worker is gone)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            async with self.db.write() as s:
                await s.execute(delete(WorkerRow).where(WorkerRow.id == self.id))
        except Exception:  # its row then ages out: not live after three heartbeats
            log.warning("could not remove the worker's row", worker_id=self.id, exc_info=True)


def _live_after(heartbeat_seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=LIVE_HEARTBEATS * heartbeat_seconds)


async def live_workers(
    db: Database, heartbeat_seconds: float = 5.0, dead_within: timedelta | None = None
) -> list[WorkerInfo]:
    """The live workers (seen within three heartbeats), oldest first; with `dead_within`,
    also those last seen that recently, flagged `live=False`. Each with the jobs it runs
    now, read from the job table (exact, where the row's `current_job_id` is as of its
    last heartbeat)."""
    live_after = _live_after(heartbeat_seconds)
    shown_after = live_after - dead_within if dead_within is not None else live_after
    async with db.read() as s:
        rows = (
            await s.scalars(
                select(WorkerRow)
                .where(WorkerRow.last_seen >= shown_after)
                .order_by(WorkerRow.started_at, WorkerRow.id)
            )
        ).all()
        running: dict[str, list[str]] = {}
        if rows:
            jobs = await s.execute(
                select(Job.worker_id, Job.id)
                .where(Job.status == "running", Job.worker_id.in_([r.id for r in rows]))
                .order_by(Job.started_at, Job.id)
            )
            for worker_id, job_id in jobs.all():
                running.setdefault(worker_id, []).append(job_id)
    return [
        WorkerInfo(
            id=r.id,
            host=r.host,
            pid=r.pid,
            device=r.device,
            models=list(r.models or []),
            current_job_id=(running.get(r.id) or [None])[0],
            running=len(running.get(r.id, [])),
            started_at=r.started_at,
            last_seen=r.last_seen,
            live=r.last_seen >= live_after,
        )
        for r in rows
    ]


async def served_models(db: Database, heartbeat_seconds: float = 5.0) -> set[str]:
    """The models some live worker claims."""
    return (await _served(db, heartbeat_seconds))[0]


async def _served(db: Database, heartbeat_seconds: float) -> tuple[set[str], bool]:
    """(models some live worker claims, whether any worker is live: any worker draws
    mark jobs, whatever their model)."""
    async with db.read() as s:
        rows = (
            await s.scalars(
                select(WorkerRow.models).where(
                    WorkerRow.last_seen >= _live_after(heartbeat_seconds)
                )
            )
        ).all()
    return {m for models in rows for m in models or []}, bool(rows)


def _unserved(model: str, kind: str | None, served: set[str], anyone: bool) -> str | None:
    if kind == MARK_KIND:
        return None if anyone else "no live worker"
    return None if model in served else f"no live worker serves model {model}"


async def waiting_reason(
    db: Database, model: str, kind: str | None, heartbeat_seconds: float = 5.0
) -> str | None:
    """Why a queued job of (model, kind) cannot start: `no live worker serves model X`,
    or None when a live worker claims such jobs."""
    served, anyone = await _served(db, heartbeat_seconds)
    return _unserved(model, kind, served, anyone)


async def waiting_reasons(
    db: Database, jobs: Iterable[tuple[str, str | None]], heartbeat_seconds: float = 5.0
) -> list[str | None]:
    """`waiting_reason` of several (model, kind), from one read of the workers."""
    served, anyone = await _served(db, heartbeat_seconds)
    return [_unserved(model, kind, served, anyone) for model, kind in jobs]


async def fail_unserved(queue: JobQueue, heartbeat_seconds: float, timeout: float) -> int:
    """Fail, as `generation_timeout` (nothing charged, the reservation returned), the jobs
    queued longer than `timeout` seconds that no live worker serves; the number failed.
    Jobs some live worker serves are left to it however long the queue is."""
    cutoff = utcnow() - timedelta(seconds=timeout)
    async with queue.db.read() as s:
        stale = (
            await s.execute(
                select(Job.id, Job.model, Job.kind).where(
                    Job.status == "queued", Job.created_at < cutoff
                )
            )
        ).all()
    if not stale:
        return 0
    served, anyone = await _served(queue.db, heartbeat_seconds)
    failed = 0
    for job_id, model, kind in stale:
        reason = _unserved(model, kind, served, anyone)
        if reason is None:
            continue
        message = f"{reason}; waited {timeout:g} s"
        if (await queue.fail(job_id, "generation_timeout", message, statuses=("queued",))).settled:
            failed += 1
    return failed
