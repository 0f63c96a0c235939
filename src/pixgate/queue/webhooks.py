"""Task webhooks: signing, URL checks, and the deliverer that API nodes run.

Delivery state lives on the job's row (`webhook_status`, `webhook_attempts`,
`webhook_next_at`), so it survives restarts and any API node can deliver. A node takes an
attempt with one conditional UPDATE (still pending, due, and `webhook_attempts` as it saw
it), so two nodes never make the same attempt. Taking it also pushes `webhook_next_at` out
by a lease: an attempt cut short by a crash is retried by whichever node looks next.

The signature is Stripe's scheme: `X-Pixgate-Signature: t=<unix>,v1=<hex>` where
hex = HMAC-SHA256(secret, f"{t}.{body}"); `verify` is the receiver's side.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import func, insert, or_, select, update

from pixgate import __version__
from pixgate.accounts.secrets import SecretBox
from pixgate.db import Database, Job, WebhookAttempt, utcnow
from pixgate.errors import invalid
from pixgate.processing.fetch import (
    GuardedTransport,
    address_allowed,
    literal_address,
    local_name,
    parse_networks,
)
from pixgate.queue.notifications import Notifications, Signal
from pixgate.settings import Settings

log = structlog.get_logger("pixgate.queue.webhooks")

SIGNATURE_HEADER = "X-Pixgate-Signature"
EVENT_HEADER = "X-Pixgate-Event"
ATTEMPT_HEADER = "X-Pixgate-Attempt"
MAX_URL_LENGTH = 2048
MAX_IN_FLIGHT = 16  # deliveries one node makes at a time
_FINISHED = ("succeeded", "failed")


# --- signing ---------------------------------------------------------------------------
def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header's value for `body`, sent at `timestamp` (default: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str, body: bytes, header: str, tolerance: float = 300, now: float | None = None
) -> bool:
    """Whether `header` signs `body` with `secret` and is at most `tolerance` seconds old
    (old signatures are refused so a captured request cannot be replayed later)."""
    try:
        parts = dict(p.strip().split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs((time.time() if now is None else now) - t) <= tolerance
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


def account_secret(server_secret: bytes, user_id: str) -> str:
    """The account's webhook secret: derived from the server's signing secret, so every
    API node computes the same one without storing it."""
    mac = hmac.new(server_secret, f"pixgate-webhook:{user_id}".encode(), hashlib.sha256)
    return "whsec_" + mac.hexdigest()[:48]


def check_url(url: str, param: str = "webhook_url", allow: Sequence[str] = ()) -> str:
    """The URL if pixgate can POST to it (absolute http or https, with a host, at most
    MAX_URL_LENGTH characters, not a loopback, private or other non-public address unless
    inside `allow`); a 400 naming `param` otherwise.

    Addresses written in the URL (in any spelling: `127.1`, `2130706433`, `[::1]`) and
    `localhost` are judged here, at submit time, without DNS. Other names are resolved and
    checked when each delivery connects (the deliverer's `GuardedTransport`), since what a
    name resolves to can change between now and then."""
    if len(url) > MAX_URL_LENGTH:
        raise invalid(
            param,
            f"must be at most {MAX_URL_LENGTH} characters (got {len(url)})",
            f"长度不能超过 {MAX_URL_LENGTH} 个字符(收到 {len(url)})",
        )
    problem = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "the scheme must be http or https"
        elif not parts.hostname:
            problem = "it has no host"
        elif any(c.isspace() or ord(c) < 32 for c in url):
            problem = "it contains whitespace or control characters"
        elif not _destination_allowed(parts.hostname, allow):
            raise invalid(
                param,
                "must point to a public address (loopback, private and link-local addresses "
                "are refused unless the server's webhook_allow lets them)",
                "必须指向公网地址(回环、私有和链路本地地址会被拒绝,除非服务器的 "
                "webhook_allow 允许)",
            )
    if problem:
        raise invalid(
            param,
            f"must be an absolute http(s) URL such as https://example.com/hook ({problem})",
            f"必须是绝对的 http(s) 地址,例如 https://example.com/hook({problem})",
        )
    return url


def _destination_allowed(host: str, allow: Sequence[str]) -> bool:
    """What can be known without DNS: whether a literal address (or `localhost`) may be
    reached; names needing DNS pass here and are checked at delivery."""
    networks = parse_networks(allow)
    if local_name(host):
        candidates = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    else:
        literal = literal_address(host)
        if literal is None:
            return True
        candidates = [literal]
    return any(address_allowed(a, networks) for a in candidates)


def backoff(attempt: int, base: float) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): base, 2 base, 4 base..."""
    return base * 2 ** (attempt - 1)


# --- delivery --------------------------------------------------------------------------
class WebhookDeliverer:
    """Delivers due webhooks: those of finished tasks, at once when the task finished in
    this process (a `job_finished` notification wakes it), otherwise found by polling every
    `webhook_poll_seconds` (workers in other processes, retries after a backoff)."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        settings: Settings,
        render: Callable[[Job], dict[str, Any]],
        notifications: Notifications | None = None,
    ):
        self.db = db
        self.box = box
        self.settings = settings
        self.render = render  # the task object POSTed (the API's GET /v1/tasks/{id} shape)
        # Set by any finish in this process (one due-webhook query tells whether it had
        # a webhook), and by a delivery ending (room for the next one).
        self.wake = notifications.finished_signal() if notifications else Signal()
        self._in_flight: dict[str, asyncio.Task] = {}
        self._client: httpx.AsyncClient | None = None

    async def run(self) -> None:
        timeout = httpx.Timeout(self.settings.webhook_timeout_seconds)
        headers = {"User-Agent": f"pixgate-webhooks/{__version__}"}
        # Every delivery connects through the address guard, after resolving the name.
        transport = GuardedTransport(parse_networks(self.settings.webhook_allow))
        async with httpx.AsyncClient(
            timeout=timeout, headers=headers, transport=transport
        ) as client:
            self._client = client
            try:
                while True:
                    self.wake.clear()  # a finish from now on starts another round
                    delay = self.settings.webhook_poll_seconds
                    try:
                        await self.deliver_due()
                        delay = await self._next_delay()
                    except Exception:
                        log.exception("webhook round failed")
                    await self.wake.wait(delay)
            finally:
                # Shutting down: deliveries under way record themselves as interrupted,
                # due again at once (for the next node or the next start).
                for task in self._in_flight.values():
                    task.cancel()
                await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def deliver_due(self) -> int:
        """Start delivering every due webhook this node has room for; returns how many."""
        room = MAX_IN_FLIGHT - len(self._in_flight)
        if room <= 0:
            return 0
        now = utcnow()
        async with self.db.read() as s:
            due = (
                await s.execute(
                    select(Job.id, Job.webhook_attempts)
                    .where(
                        Job.webhook_status == "pending",
                        Job.status.in_(_FINISHED),
                        or_(Job.webhook_next_at.is_(None), Job.webhook_next_at <= now),
                    )
                    .order_by(Job.finished_at)
                    .limit(MAX_IN_FLIGHT * 2)
                )
            ).all()
        started = 0
        for job_id, seen in due:
            if job_id in self._in_flight or started >= room:
                continue
            task = asyncio.create_task(self._deliver(job_id, seen), name=f"webhook-{job_id}")
            self._in_flight[job_id] = task
            task.add_done_callback(lambda _t, j=job_id: self._done(j))
            started += 1
        return started

    def _done(self, job_id: str) -> None:
        self._in_flight.pop(job_id, None)
        self.wake.set()  # room for the next due delivery

    async def _next_delay(self) -> float:
        """Seconds until the earliest retry falls due, at most the poll interval."""
        poll = self.settings.webhook_poll_seconds
        async with self.db.read() as s:
            soonest = await s.scalar(
                select(func.min(Job.webhook_next_at)).where(
                    Job.webhook_status == "pending", Job.status.in_(_FINISHED)
                )
            )
        if soonest is None:
            return poll
        return min(poll, max(0.01, (soonest - utcnow()).total_seconds()))

    async def _deliver(self, job_id: str, seen: int) -> None:
        try:
            if seen >= self.settings.webhook_max_attempts:  # its last attempt was cut short
                await self._give_up(job_id, seen)
                return
            job = await self._claim(job_id, seen)
            if job is not None:  # None: another node took this attempt
                await self._attempt(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook delivery failed", job_id=job_id)

    async def _claim(self, job_id: str, seen: int) -> Job | None:
        now = utcnow()
        lease = timedelta(seconds=self.settings.webhook_timeout_seconds * 2 + 30)
        async with self.db.write() as s:
            return await s.scalar(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.webhook_status == "pending",
                    Job.status.in_(_FINISHED),
                    Job.webhook_attempts == seen,
                    or_(Job.webhook_next_at.is_(None), Job.webhook_next_at <= now),
                )
                .values(webhook_attempts=seen + 1, webhook_next_at=now + lease)
                .returning(Job)
            )

    async def _attempt(self, job: Job) -> None:
        """POST the task object once and record the outcome."""
        attempt = job.webhook_attempts
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            body = json.dumps(self.render(job), separators=(",", ":")).encode()
            secret = self.box.decrypt(job.webhook_secret_enc)
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(secret, body),
                EVENT_HEADER: f"task.{job.task_status}",
                ATTEMPT_HEADER: str(attempt),
            }
            async with (
                asyncio.timeout(self.settings.webhook_timeout_seconds),
                self._client.stream("POST", job.webhook_url, content=body, headers=headers) as r,
            ):
                status_code = r.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except asyncio.CancelledError:
            await self._record(job, attempt, None, "interrupted: the server shut down", 0, True)
            raise
        except (httpx.HTTPError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}".rstrip(": ")[:500]
        except Exception as exc:  # rendering or the secret: still counted, still retried
            log.exception("webhook could not be prepared", job_id=job.id)
            error = f"{type(exc).__name__}"
        ms = int((time.monotonic() - started) * 1000)
        await self._record(job, attempt, status_code, error, ms)

    async def _record(
        self,
        job: Job,
        attempt: int,
        status_code: int | None,
        error: str | None,
        duration_ms: int,
        retry_now: bool = False,
    ) -> None:
        """Append the attempt and move the webhook on: delivered, retried after a backoff,
        or failed after the last attempt. Only the node holding the attempt moves it."""
        now = utcnow()
        if error is None:
            values: dict[str, Any] = {
                "webhook_status": "delivered",
                "webhook_next_at": None,
                "webhook_last_error": None,
            }
        elif attempt >= self.settings.webhook_max_attempts:
            values = {"webhook_status": "failed", "webhook_next_at": None}
        else:
            wait = 0 if retry_now else backoff(attempt, self.settings.webhook_backoff_seconds)
            values = {"webhook_next_at": now + timedelta(seconds=wait)}
        if error is not None:
            values["webhook_last_error"] = error
        async with self.db.write() as s:
            await s.execute(
                insert(WebhookAttempt).values(
                    job_id=job.id,
                    attempt=attempt,
                    url=job.webhook_url,
                    status_code=status_code,
                    error=error,
                    duration_ms=duration_ms,
                    created_at=now,
                )
            )
            await s.execute(
                update(Job)
                .where(
                    Job.id == job.id,
                    Job.webhook_status == "pending",
                    Job.webhook_attempts == attempt,
                )
                .values(**values)
            )
        log.info(
            "webhook attempt",
            job_id=job.id,
            attempt=attempt,
            status_code=status_code,
            error=error,
            outcome=values.get("webhook_status", "retry"),
        )

    async def _give_up(self, job_id: str, seen: int) -> None:
        async with self.db.write() as s:
            await s.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.webhook_status == "pending",
                    Job.webhook_attempts == seen,
                )
                .values(webhook_status="failed", webhook_next_at=None)
            )


async def attempts(db: Database, job_id: str) -> list[WebhookAttempt]:
    """A task's delivery attempts, oldest first."""
    async with db.read() as s:
        rows = await s.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.job_id == job_id)
            .order_by(WebhookAttempt.attempt, WebhookAttempt.id)
        )
        return list(rows.all())
