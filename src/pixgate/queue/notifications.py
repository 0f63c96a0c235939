"""Job notifications: "a job was queued", "job X finished", "job X was cancelled".

They only make things faster. The database stays the truth: whoever is woken reads the
job's row, and whoever misses a notification (it was sent by another process or machine)
still finds the change by polling, more slowly. So an implementation may drop, repeat or
merge notifications, and the payload is just a job id: exactly what PostgreSQL
LISTEN/NOTIFY carries. A LISTEN/NOTIFY implementation sends on the three `job_*` calls and
feeds what it hears from other machines into the same local signals.

Consumers hold a `Signal` (one per consumer: the worker's idle wait, the webhook
deliverer's wake-up, a sync request waiting for its job) and follow one rule: clear the
signal, then look at the database, then wait. A notification landing between the look and
the wait then still ends the wait.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

CANCELLED_REMEMBERED = 10_000  # cancelled job ids kept for workers to check
ROWS_REMEMBERED = 256  # finished rows kept for waiters that have not looked yet


class Signal:
    """A wake-up for one asyncio consumer that any thread may set.

    It binds to the event loop of its first `wait`; a `set` from another thread (or
    another loop) is handed to that loop with `call_soon_threadsafe`.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def set(self) -> None:
        loop = self._loop
        if loop is None or _running_loop() is loop:
            self._event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._event.set)

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float) -> bool:
        """Whether the signal was set within `timeout` seconds (it stays set)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # an asyncio.Event serves one loop: start a new one
            was_set, self._event = self._event.is_set(), asyncio.Event()
            if was_set:
                self._event.set()
            self._loop = loop
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


QueuedFilter = Callable[[str, str | None], bool]
"""Whether a lane wants to hear of a queued job of (model, kind)."""


class Notifications(Protocol):
    """What the queue sends and what workers, waiters and webhook deliverers listen to."""

    def job_queued(self, model: str | None = None, kind: str | None = None) -> None:
        """A job became claimable (enqueued, requeued, or a lapsed lease was reaped): of
        this model and kind when known (None: any; everyone listening looks)."""
        ...

    def job_finished(self, job_id: str, webhook: bool = True, row: Any = None) -> None:
        """The job reached a final state (succeeded, failed, cancelled, timed out);
        `webhook`: it may have a webhook to deliver (False spares the deliverers a look);
        `row`: the finished job's row, when the sender has it (a waiter here need not
        read it again)."""
        ...

    def job_cancelled(self, job_id: str) -> None:
        """The job's generation must stop: cancelled by its owner, timed out, or no longer
        held by the worker running it."""
        ...

    def queued_signal(self, accepts: QueuedFilter | None = None) -> Signal:
        """A signal set on every `job_queued` that `accepts(model, kind)` (all when None),
        kept while the caller holds it."""
        ...

    def finished_signal(self) -> Signal:
        """A signal set on every `job_finished` that may have a webhook, whichever the job."""
        ...

    def watch_finished(self, job_id: str) -> AbstractContextManager[Signal]:
        """A context manager yielding a signal set when `job_id` finishes."""
        ...

    def is_cancelled(self, job_id: str) -> bool:
        """Whether `job_cancelled(job_id)` was sent; callable from any thread (the
        engine's step callback asks at every step)."""
        ...

    def finished_row(self, job_id: str) -> Any:
        """The row a `job_finished` of this process carried for the job, taken (None
        if none did: the caller reads the database)."""
        ...

    def forget(self, job_id: str) -> None:
        """Drop what is remembered about the job (its generation has ended)."""
        ...


class InProcessNotifications:
    """Notifications between the parts of one process (API node and embedded worker):
    asyncio signals for waiting, a lock-guarded set of cancelled ids for the engine
    thread. Other processes are not told; they poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queued: weakref.WeakKeyDictionary[Signal, QueuedFilter | None] = (
            weakref.WeakKeyDictionary()
        )
        self._finished: weakref.WeakSet[Signal] = weakref.WeakSet()
        self._watchers: dict[str, list[Signal]] = {}
        self._cancelled: OrderedDict[str, None] = OrderedDict()
        self._rows: OrderedDict[str, Any] = OrderedDict()  # finished rows not yet taken

    # --- sending ----------------------------------------------------------------------
    def job_queued(self, model: str | None = None, kind: str | None = None) -> None:
        with self._lock:
            listening = list(self._queued.items())
        for signal, accepts in listening:
            if model is None or accepts is None or accepts(model, kind):
                signal.set()

    def job_finished(self, job_id: str, webhook: bool = True, row: Any = None) -> None:
        with self._lock:
            if row is not None:
                self._rows[job_id] = row
                while len(self._rows) > ROWS_REMEMBERED:  # finished jobs nobody waits for
                    self._rows.popitem(last=False)
            signals = [*self._watchers.get(job_id, ()), *(self._finished if webhook else ())]
        for signal in signals:
            signal.set()

    def job_cancelled(self, job_id: str) -> None:
        with self._lock:
            self._cancelled[job_id] = None
            self._cancelled.move_to_end(job_id)
            while len(self._cancelled) > CANCELLED_REMEMBERED:  # ids nobody here ran
                self._cancelled.popitem(last=False)

    # --- listening --------------------------------------------------------------------
    def queued_signal(self, accepts: QueuedFilter | None = None) -> Signal:
        signal = Signal()
        with self._lock:
            self._queued[signal] = accepts
        return signal

    def finished_signal(self) -> Signal:
        signal = Signal()
        with self._lock:
            self._finished.add(signal)
        return signal

    @contextmanager
    def watch_finished(self, job_id: str) -> Iterator[Signal]:
        signal = Signal()
        with self._lock:
            self._watchers.setdefault(job_id, []).append(signal)
        try:
            yield signal
        finally:
            with self._lock:
                watchers = self._watchers.get(job_id, [])
                if signal in watchers:
                    watchers.remove(signal)
                if not watchers:
                    self._watchers.pop(job_id, None)

    def is_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._cancelled.pop(job_id, None)

    def finished_row(self, job_id: str) -> Any:
        with self._lock:
            return self._rows.pop(job_id, None)
