"""Notifications across processes and machines: PostgreSQL LISTEN/NOTIFY.

`PgNotifications` delivers in this process exactly as `InProcessNotifications` does (it
wraps one), and also sends every `job_queued` / `job_finished` / `job_cancelled` as a
NOTIFY on one channel, and feeds what other processes send into the same local signals:
a job queued on an API node wakes idle workers elsewhere at once, a job finished by a
worker wakes the API node holding its sync request, and a cancellation stops the
generation on whichever worker runs it at its next step.

Notifications only make things faster (see `pixgate.queue.notifications`): while the
connection is down everything still works by polling, and a NOTIFY that never arrives
costs one poll interval. Sending never blocks the caller: the `job_*` methods (called from
the event loop, sometimes from worker threads) put the payload on an outbox that one task
drains onto the connection, many payloads a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from contextlib import AbstractContextManager
from typing import Any

import structlog
from sqlalchemy.engine import make_url

from pixgate.queue.notifications import InProcessNotifications, QueuedFilter, Signal

log = structlog.get_logger("pixgate.queue.notify_pg")

CHANNEL = "pixgate_jobs"
MAX_PAYLOAD = 7900  # bytes; PostgreSQL refuses payloads of 8000 and more
OUTBOX_SIZE = 10_000  # payloads waiting for the connection; more are dropped (polling)
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 10.0  # seconds between reconnection attempts
KEEPALIVE = 15.0  # seconds of silence after which the connection is checked
CONNECT_TIMEOUT = 10.0
SEND = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p"  # one round trip for many


def asyncpg_dsn(url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy URL (`postgresql+asyncpg://...` -> `postgresql://...`)."""
    parsed = make_url(url)
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=False)


def notifications_for(url: str) -> InProcessNotifications | PgNotifications:
    """LISTEN/NOTIFY on PostgreSQL; in-process only (other processes poll) otherwise."""
    if make_url(url).get_backend_name() == "postgresql":
        return PgNotifications(url)
    return InProcessNotifications()


class _Lost:
    """Put on the outbox when the connection it names has ended."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn


class PgNotifications:
    """In-process notifications, also sent to and heard from every other process on the
    same PostgreSQL database. `start()` before use, `close()` at the end; in between it
    reconnects by itself after a lost connection."""

    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        self.local = InProcessNotifications()
        self.dsn = asyncpg_dsn(url)
        self.channel = channel
        self.origin = uuid.uuid4().hex[:12]  # our own NOTIFYs come back: skipped by this
        self.connected = asyncio.Event()  # for tests and benchmarks: LISTEN is active
        self.heard = 0  # notifications from other processes delivered here
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[str | _Lost] | None = None
        self._conn: Any = None
        self._task: asyncio.Task | None = None
        self._closing = False

    # --- lifecycle --------------------------------------------------------------------
    async def start(self, wait: float = CONNECT_TIMEOUT) -> None:
        """Connect, LISTEN and start sending; waits up to `wait` seconds for the first
        connection (a database that is down is retried in the background meanwhile)."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.connected = asyncio.Event()  # an Event serves one loop: a restart gets a new one
        self._outbox = asyncio.Queue(OUTBOX_SIZE)
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="pixgate-notify-pg")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.connected.wait()

    async def close(self, flush: float = 1.0) -> None:
        """Stop; what is still waiting to be sent gets `flush` seconds (a requeue at
        shutdown reaches the other workers)."""
        if self._task is None:
            return
        self._closing = True
        outbox = self._outbox
        if outbox is not None and not outbox.empty() and self.connected.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush):
                    while not outbox.empty() and not self._task.done():
                        await asyncio.sleep(0.005)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        self._loop = None
        self._outbox = None

    async def _run(self) -> None:
        """Keep one connection listening and sending, reconnecting with backoff."""
        import asyncpg

        backoff = BACKOFF_FIRST
        down_since: float | None = None
        loop = asyncio.get_running_loop()
        while not self._closing:
            conn = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
                conn.add_termination_listener(self._on_terminated)
                await conn.add_listener(self.channel, self._on_notification)
                self._conn = conn
                self.connected.set()
                if down_since is not None:
                    log.info(
                        "notifications reconnected",
                        channel=self.channel,
                        seconds_down=round(loop.time() - down_since, 1),
                    )
                    # What was sent meanwhile is lost: idle workers here look now.
                    self.local.job_queued()
                down_since, backoff = None, BACKOFF_FIRST
                await self._send_until_lost(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused, dropped, timed out: poll until back
                if down_since is None and not self._closing:
                    down_since = loop.time()
                    log.warning(
                        "notifications connection lost; polling until it is back",
                        channel=self.channel,
                        error=f"{type(exc).__name__}: {exc}",
                    )
            finally:
                self.connected.clear()
                self._conn = None
                if conn is not None:
                    await _close_quietly(conn)
            if not self._closing:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _send_until_lost(self, conn: Any) -> None:
        """Drain the outbox onto `conn` until it is lost (raises ConnectionError)."""
        assert self._outbox is not None
        outbox = self._outbox
        while True:
            try:
                first = await asyncio.wait_for(outbox.get(), KEEPALIVE)
            except TimeoutError:  # a silent network drop shows up only when we talk
                await conn.execute("SELECT 1", timeout=CONNECT_TIMEOUT)
                continue
            items = [first]
            while not outbox.empty():
                items.append(outbox.get_nowait())
            payloads = [p for p in items if isinstance(p, str)]
            if payloads:
                await conn.fetch(SEND, self.channel, payloads, timeout=CONNECT_TIMEOUT)
            if any(isinstance(p, _Lost) and p.conn is conn for p in items) or conn.is_closed():
                raise ConnectionError("the notification connection was closed")

    def _on_terminated(self, conn: Any) -> None:
        if self._outbox is not None and not self._closing:
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(_Lost(conn))

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("o") == self.origin:
                return  # ours: already delivered here
            kind = message["t"]
            if kind == "q":
                self.local.job_queued(message.get("m"), message.get("k"))
            elif kind == "f":
                self.local.job_finished(message["j"], bool(message.get("w", True)))
            elif kind == "c":
                self.local.job_cancelled(message["j"])
            else:
                return
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("unreadable notification", channel=self.channel, payload=payload[:200])
            return
        self.heard += 1

    # --- sending ----------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        """Queue a NOTIFY; from any thread, never blocking. Dropped when not started or the
        outbox is full: the others then find the change by polling."""
        loop, outbox = self._loop, self._outbox
        if loop is None or outbox is None or self._closing:
            return
        payload = json.dumps({"o": self.origin, **message}, separators=(",", ":"))
        if len(payload.encode()) > MAX_PAYLOAD:
            if message.get("t") != "q":
                return  # a job id is short; nothing sane gets here
            payload = json.dumps({"o": self.origin, "t": "q"})  # any model: all look
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _put(outbox, payload)
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(_put, outbox, payload)

    def job_queued(self, model: str | None = None, kind: str | None = None) -> None:
        self.local.job_queued(model, kind)
        self._send({"t": "q", "m": model, "k": kind})

    def job_finished(self, job_id: str, webhook: bool = True, row: Any = None) -> None:
        self.local.job_finished(job_id, webhook, row)
        self._send({"t": "f", "j": job_id, "w": int(webhook)})

    def job_cancelled(self, job_id: str) -> None:
        self.local.job_cancelled(job_id)
        self._send({"t": "c", "j": job_id})

    # --- listening: all local ---------------------------------------------------------
    def queued_signal(self, accepts: QueuedFilter | None = None) -> Signal:
        return self.local.queued_signal(accepts)

    def finished_signal(self) -> Signal:
        return self.local.finished_signal()

    def watch_finished(self, job_id: str) -> AbstractContextManager[Signal]:
        return self.local.watch_finished(job_id)

    def is_cancelled(self, job_id: str) -> bool:
        return self.local.is_cancelled(job_id)

    def finished_row(self, job_id: str) -> Any:
        return self.local.finished_row(job_id)

    def forget(self, job_id: str) -> None:
        self.local.forget(job_id)

    # --- for tests: the backend pid of the listening connection ---------------------------
    def backend_pid(self) -> int | None:
        conn = self._conn
        return None if conn is None else conn.get_server_pid()


def _put(outbox: asyncio.Queue, payload: str) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        outbox.put_nowait(payload)


async def _close_quietly(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except Exception:
        conn.terminate()
