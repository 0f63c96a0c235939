"""Refuse a signed request seen before: each signature may be used once while its
timestamp is still accepted. In memory for one node; in Redis (`SET NX EX`) when
`redis_url` is configured, so every API node of a scaled deployment shares what was seen.

If Redis is unreachable the request is let through and a warning logged, like the rate
limiter: the signature and its timestamp are still checked, so an outage only reopens the
replay window, it does not take signed requests down.
"""

from __future__ import annotations

import heapq
import math
import time

import structlog

log = structlog.get_logger("pixgate.accounts.replay")

KEY_PREFIX = "pixgate:signature:"


class ReplayGuard:
    def __init__(self, redis_url: str | None = None):
        self._seen: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []  # heap, to forget in expiry order
        self._redis = None
        if redis_url:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(redis_url)

    async def first_use(self, token: str, ttl_seconds: float) -> bool:
        """Remember `token` for `ttl_seconds`; False if it is already remembered."""
        ttl = max(1, math.ceil(ttl_seconds))
        if self._redis is not None:
            try:
                return bool(await self._redis.set(KEY_PREFIX + token, b"1", nx=True, ex=ttl))
            except Exception:
                log.warning("replay store unavailable; allowing request", exc_info=True)
                return True
        now = time.monotonic()
        self._forget_expired(now)
        if token in self._seen:
            return False
        self._seen[token] = now + ttl
        heapq.heappush(self._expiries, (now + ttl, token))
        return True

    def _forget_expired(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            expiry, token = heapq.heappop(self._expiries)
            if self._seen.get(token) == expiry:
                del self._seen[token]

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
