"""A circuit breaker per channel, as each relay worker sees it.

closed: calls go through; `threshold` failures within `window` seconds open it.
open: the channel is skipped for `cooldown` seconds.
half_open: after the cooldown one call (the probe) goes through; its success closes the
breaker, its failure opens it for another cooldown. Other requests skip the channel
while the probe is out.

Failures are the channel's own (connect errors, timeouts, 429, 5xx, unusable answers), not
requests the upstream refused on their merits. The clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class Breaker:
    def __init__(
        self,
        threshold: int,
        window: float,
        cooldown: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self._clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def open_for(self) -> float:
        """Seconds until an open breaker lets a probe through (0 unless open)."""
        if self.state != "open" or self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self._clock() - self._opened_at))

    def available(self) -> bool:
        """Whether a call could go through now (without taking the probe)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probing)

    def acquire(self) -> bool:
        """Take the right to call: always when closed; when half-open, only the one probe."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._failures.clear()
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        now = self._clock()
        if self._opened_at is not None:  # the probe failed (or a call from before it opened)
            self._opened_at = now
            self._probing = False
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.window:
            self._failures.popleft()
        if len(self._failures) >= self.threshold:
            self._opened_at = now
            self._failures.clear()

    def release(self) -> None:
        """A call that ended without a verdict (cancelled, refused on its merits): a probe
        gives its turn back."""
        self._probing = False
