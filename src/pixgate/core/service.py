"""The core every dialect and router talks to, as a thin facade over parts with one idea
each: `identity` (who is calling, their account), `admission` (what may be asked for, and
admitting it as a job), `tasks` (waiting for, reading and cancelling jobs; result images)
and `admin` (the operator's actions). The facade builds them over one database, queue and
storage, and runs the lifecycle (migrations, worker, housekeeping, webhooks).

Dialects and routers call methods of the parts and get view dataclasses back
(`pixgate.core.views`); they never touch the database, the queue or storage. The wiring
attributes (`db`, `queue`, `storage`, ...) are for the CLI, workers and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import generate_latest

from pixgate.accounts.limits import RateLimiter
from pixgate.accounts.replay import ReplayGuard
from pixgate.accounts.secrets import SecretBox, server_secret
from pixgate.backends import check_catalog
from pixgate.core.admin import Administration
from pixgate.core.admission import AdmissionDesk
from pixgate.core.channels import Channels
from pixgate.core.console import Console
from pixgate.core.fleet import Fleet
from pixgate.core.identity import Identity, SignedCaller
from pixgate.core.moderation import Moderation
from pixgate.core.tasks import Tasks
from pixgate.core.views import GeneratedImage, GenerationResult, TaskView, task_view
from pixgate.db import Database
from pixgate.metrics import Metrics
from pixgate.processing.label import Inspection, inspect_file, label_key
from pixgate.processing.offload import off_loop
from pixgate.queue import queries, registry
from pixgate.queue.jobs import JobQueue
from pixgate.queue.notify_pg import PgNotifications, notifications_for
from pixgate.queue.webhooks import WebhookDeliverer
from pixgate.settings import Settings
from pixgate.spec.catalog import Catalog
from pixgate.storage import Storage, make_storage

__all__ = ["GeneratedImage", "GenerationResult", "Pixgate", "SignedCaller", "TaskView"]

log = structlog.get_logger("pixgate.core.service")

TaskRenderer = Callable[[TaskView], dict[str, Any]]


class Pixgate:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.catalog = Catalog.build(settings.models, settings.demo, settings.default_model)
        check_catalog(self.catalog)  # a bad `fake:` source stops API nodes too, naming it
        self.db = Database(settings.db_url)
        self.metrics = Metrics()
        self._server_secret = server_secret(settings.data_dir, settings.signing_secret)
        self.storage: Storage = make_storage(settings, self._server_secret)
        # LISTEN/NOTIFY across processes on PostgreSQL; in-process (others poll) on SQLite.
        self.notifications = notifications_for(settings.db_url)
        self.queue = JobQueue(
            self.db,
            settings.max_queue,
            settings.billing_enabled,
            settings.currency,
            self.notifications,
        )
        self.box = SecretBox.for_data_dir(settings.data_dir, settings.master_key)
        self.limiter = RateLimiter(
            settings.redis_url,
            settings.global_requests_per_second,
            settings.unauthenticated_per_ip_per_minute,
        )
        self.replays = ReplayGuard(settings.redis_url)
        self.worker = None
        self.registration: registry.Registration | None = None  # the worker's heartbeat row
        # The task object webhooks POST; set by the API app, so API nodes deliver webhooks
        # and standalone workers do not.
        self.task_renderer: TaskRenderer | None = None
        self.webhooks: WebhookDeliverer | None = None
        self._background: list[asyncio.Task] = []

        self.identity = Identity(
            settings,
            self.catalog,
            self.db,
            self.box,
            self.limiter,
            self.replays,
            self._server_secret,
        )
        self.moderation = Moderation(settings, self.db)
        self.admission = AdmissionDesk(
            settings,
            self.catalog,
            self.queue,
            self.storage,
            self.box,
            self.limiter,
            self.identity,
            self.moderation,
        )
        self.tasks = Tasks(
            settings,
            self.db,
            self.queue,
            self.storage,
            self.metrics,
            self.admission,
            lambda: self.worker is not None,
        )
        self.admin = Administration(self.db, self.catalog, self.queue, self.box, self.identity)
        self.console = Console(
            settings, self.catalog, self.db, self.queue, self.limiter, self.identity, self.admin
        )
        self.channels = Channels(settings, self.catalog, self.db)
        self.fleet = Fleet(settings, self.db)

    async def start(
        self, with_worker: bool | None = None, worker_models: list[str] | None = None
    ) -> None:
        """Migrate, start the worker (unless told not to; `worker_models`: only these
        models), housekeeping and webhooks, and open admission."""
        self.loop = asyncio.get_running_loop()
        await self.db.migrate()
        if isinstance(self.notifications, PgNotifications):
            await self.notifications.start()
        if with_worker if with_worker is not None else self.settings.run_workers:
            from pixgate.queue.worker import Worker

            self.worker = Worker(
                self.settings,
                self.catalog,
                self.queue,
                self.storage,
                self.metrics,
                models=worker_models,
            )
            self.worker.start()
            # Registered before admission opens: an embedded job never reads "no live worker".
            served = [s for s in self.catalog if worker_models is None or s.name in worker_models]
            self.registration = registry.Registration(
                self.db, self.worker.id, served, self.settings.worker_heartbeat_seconds
            )
            await self.registration.start()
        self._background.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        if self.task_renderer is not None:
            render = self.task_renderer
            self.webhooks = WebhookDeliverer(
                self.db,
                self.box,
                self.settings,
                lambda job: render(task_view(job)),
                self.queue.notifications,
            )
            self._background.append(asyncio.create_task(self.webhooks.run(), name="webhooks"))
        self._watch_sighup()
        self.admission.open()

    def _watch_sighup(self) -> None:
        """SIGHUP reloads the blocked-term file. Only the main thread's loop can take
        signals (an app embedded in a thread, as in tests, reloads via the admin API)."""
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self.loop.add_signal_handler(signal.SIGHUP, self.moderation.reload_quietly)

    async def stop(self) -> None:
        self.admission.close()
        if self.worker is not None:
            await self.worker.stop(self.settings.shutdown_grace_seconds)
        if self.registration is not None:
            await self.registration.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.replays.close()
        if isinstance(self.notifications, PgNotifications):
            await self.notifications.close()
        await self.db.dispose()

    async def _housekeeping(self) -> None:
        """Sweep expired files and rescue jobs whose worker vanished."""
        while True:
            try:
                removed = await asyncio.to_thread(self.storage.sweep)
                requeued, failed = await self.queue.reap_lapsed(self.settings.max_attempts)
                unserved = await registry.fail_unserved(
                    self.queue,
                    self.settings.worker_heartbeat_seconds,
                    self.settings.generation_timeout_seconds,
                )
                if removed or requeued or failed or unserved:
                    log.info(
                        "housekeeping",
                        files_removed=removed,
                        jobs_requeued=requeued,
                        jobs_failed=failed,
                        jobs_unserved=unserved,
                    )
            except Exception:
                log.exception("housekeeping failed")
            await asyncio.sleep(self.settings.sweep_interval_seconds)

    # --- deployment-wide facts and operations -------------------------------------------
    @property
    def public_url(self) -> str | None:
        """The configured public base URL of links (None: the request's own base URL)."""
        return self.settings.public_url

    def model_names(self) -> list[str]:
        return self.admission.model_names()

    async def readiness(self) -> dict[str, str]:
        """Each readiness check and its state ("ok" when it passes)."""
        checks = {"database": await queries.database_state(self.db)}
        checks["accepting"] = "ok" if self.admission.accepting else "shutting down"
        if self.worker is not None:
            worker = self.worker
            checks["worker"] = (
                "stopped" if not worker.alive else "ok" if worker.ready else "loading models"
            )
        return checks

    async def inspect_image(self, data: bytes) -> Inspection:
        """Whether `data` carries a TC260 label this server made for its pixels (decoded
        on the pixel pool, off the event loop)."""
        return await off_loop(inspect_file, data, label_key(self._server_secret))

    async def metrics_exposition(self) -> bytes:
        """The Prometheus text exposition, with the queue depth read now."""
        self.metrics.queue_depth.set(await self.queue.depth())
        return generate_latest(self.metrics.registry)
