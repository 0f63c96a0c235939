"""Pixel work off the event loop, on a pool that leaves the loop a core.

Decoding a 16-megapixel upload, storing it as PNG or base64-encoding a result takes from
tens of milliseconds to a second. On the event loop that would stall every other request;
in `asyncio.to_thread` it would not hold the loop, but two or three uploads at once could
occupy every core of a small machine, and the loop would wait for the scheduler instead.
So image work runs on its own pool of one thread fewer than the machine has cores (at
least one): the loop always has a core to answer `/healthz`, a poll or a cancel, and
further uploads queue for a thread instead of crowding the CPU.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

WORKERS = max(1, (os.cpu_count() or 2) - 1)
_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pixgate-pixels")


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` on the pixel pool, with the caller's context variables (the
    request id the logs carry), as `asyncio.to_thread` would."""
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_pool, call)
