"""Rate limits with the `limits` library: in memory for one node, Redis when every API
node must share the counts (`PIXGATE_REDIS_URL`).

Limits: per key per second and per day (by the account's plan), a global per-second cap,
and, for requests that fail authentication, per client IP per minute. If the storage
(Redis) is unreachable, requests are allowed and a warning is logged: a rate limiter
outage should not take the API down with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable

import structlog
from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from pixgate.errors import PixgateError
from pixgate.settings import Plan

log = structlog.get_logger("pixgate.accounts.limits")


def storage_uri(redis_url: str | None) -> str:
    if not redis_url:
        return "async+memory://"
    return redis_url if redis_url.startswith("async+") else f"async+{redis_url}"


class RateLimiter:
    def __init__(
        self,
        redis_url: str | None = None,
        global_per_second: int | None = None,
        unauthenticated_per_minute: int | None = None,
    ):
        uri = storage_uri(redis_url)
        # limits' async Redis storage defaults to coredis; we ship redis-py instead.
        options = {"implementation": "redispy"} if "redis" in uri.split("://")[0] else {}
        self.storage = storage_from_string(uri, **options)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.global_item = RateLimitItemPerSecond(global_per_second) if global_per_second else None
        self.ip_item = (
            RateLimitItemPerMinute(unauthenticated_per_minute)
            if unauthenticated_per_minute
            else None
        )

    @staticmethod
    async def _allowed(check: Awaitable[bool]) -> bool:
        try:
            return await check
        except Exception:  # storage down: serve rather than fail every request
            log.warning("rate limit storage unavailable; allowing request", exc_info=True)
            return True

    async def _hit(self, item: RateLimitItem, what: str, *identifiers: str) -> None:
        if not await self._allowed(self.limiter.hit(item, *identifiers)):
            raise await self._refusal(item, what, *identifiers)

    async def _refusal(self, item: RateLimitItem, what: str, *identifiers: str) -> PixgateError:
        stats = await self.limiter.get_window_stats(item, *identifiers)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        return PixgateError(
            "rate_limited",
            args_={
                "limit": f"{what} ({item.amount} per {item.GRANULARITY.name})",
                "retry_after": retry,
            },
            headers={"Retry-After": str(retry)},
        )

    async def check_request(self, key_id: str, plan_name: str, plan: Plan) -> None:
        """Count one generation request against the key's plan and the global cap, or raise
        429 with Retry-After."""
        if self.global_item is not None:
            await self._hit(self.global_item, "server-wide limit", "global")
        if plan.requests_per_second:
            await self._hit(
                RateLimitItemPerSecond(plan.requests_per_second),
                f"plan {plan_name}, per key",
                "key-s",
                key_id,
            )
        if plan.requests_per_day:
            await self._hit(
                RateLimitItemPerDay(plan.requests_per_day),
                f"plan {plan_name}, per key",
                "key-d",
                key_id,
            )

    async def check_ip(self, ip: str | None) -> None:
        """Before authenticating: refuse an IP that has failed authentication too often."""
        if self.ip_item is None or not ip:
            return
        if not await self._allowed(self.limiter.test(self.ip_item, "ip", ip)):
            raise await self._refusal(self.ip_item, "failed authentication per IP", "ip", ip)

    async def failed_auth(self, ip: str | None) -> None:
        if self.ip_item is not None and ip:
            await self._allowed(self.limiter.hit(self.ip_item, "ip", ip))

    async def check_login(
        self, ip: str | None, account: str, per_ip: int, per_account: int
    ) -> None:
        """Before checking a console password: 429 when this IP or this login name (whether
        or not such an account exists) has failed too often in the last minute."""
        for item, what, ids in _login_items(ip, account, per_ip, per_account):
            if not await self._allowed(self.limiter.test(item, *ids)):
                raise await self._refusal(item, what, *ids)

    async def failed_login(
        self, ip: str | None, account: str, per_ip: int, per_account: int
    ) -> None:
        for item, _, ids in _login_items(ip, account, per_ip, per_account):
            await self._allowed(self.limiter.hit(item, *ids))

    async def reset(self) -> None:
        await self.storage.reset()


def _login_items(
    ip: str | None, account: str, per_ip: int, per_account: int
) -> list[tuple[RateLimitItem, str, tuple[str, ...]]]:
    items = [
        (RateLimitItemPerMinute(per_account), "failed logins per account", ("login-a", account))
    ]
    if ip:
        items.append((RateLimitItemPerMinute(per_ip), "failed logins per IP", ("login-ip", ip)))
    return items
