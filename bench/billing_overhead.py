"""What billing adds to a request: admission (in-flight check, cap and credit reservation,
ledger row, job insert) plus settle (charge, refund, ledger rows, job update), against the
same queue operations with billing disabled, in the same run.

    .venv/bin/python bench/billing_overhead.py                # SQLite and PostgreSQL
    .venv/bin/python bench/billing_overhead.py --only sqlite

PostgreSQL is started from Debian's packages (scripts/services installs them) in a
temporary folder, as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from pixgate.accounts import keys, users  # noqa: E402
from pixgate.db import Database  # noqa: E402
from pixgate.queue.jobs import Admission, JobQueue  # noqa: E402
from pixgate.spec.catalog import ModelSpec  # noqa: E402
from pixgate.spec.request import GenerationRequest  # noqa: E402

SPEC = ModelSpec(
    name="paid",
    source="builtin:tiny-sd",
    price=Decimal("0.2"),
    sizes=["64x64"],
    default_size="64x64",
)
REQ = GenerationRequest(
    model="paid", prompt="p", width=64, height=64, n=2, seed=1, steps=1, guidance=7.5
)
IMAGES = [{"path": "x", "expires": 0, "seed": 1, "format": "png"}] * 2


async def _queue(url: str, billing: bool, cap: int | None) -> tuple[JobQueue, Admission]:
    db = Database(url)
    await db.migrate()
    user = await users.create_user(
        db, users.NewUser(f"bench-{billing}", plan="paid", grant_minor=10**12)
    )
    made = await keys.create_key(db, user.id, keys.KeySpec(image_cap=cap))
    key = (await keys.authenticate(db, made.key)).key
    return JobQueue(db, max_queue=10**6, billing_enabled=billing), Admission(key, "paid")


async def _one(queue: JobQueue, who: Admission) -> float:
    start = time.perf_counter()
    job_id = await queue.enqueue(REQ, SPEC, who, None)
    job = await queue.claim("bench", 30)
    assert job is not None and job.id == job_id
    outcome = await queue.succeed(job, "bench", IMAGES, 0.0)
    assert outcome.settled
    return time.perf_counter() - start


async def measure(url_on: str, url_off: str, requests: int, cap: int | None) -> dict:
    on, who_on = await _queue(url_on, True, cap)
    off, who_off = await _queue(url_off, False, cap)
    for _ in range(20):  # warm both
        await _one(on, who_on)
        await _one(off, who_off)
    t_on, t_off = [], []
    for _ in range(requests):  # alternate so drift hits both sides
        t_on.append(await _one(on, who_on))
        t_off.append(await _one(off, who_off))
    await on.db.dispose()
    await off.db.dispose()
    p50_on, p50_off = statistics.median(t_on), statistics.median(t_off)
    return {
        "p50_on_ms": p50_on * 1000,
        "p50_off_ms": p50_off * 1000,
        "added_ms": (p50_on - p50_off) * 1000,
        "ratio": p50_on / p50_off,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    rows = []
    caps = (("no cap", None), ("capped", 10**9))
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sqlite"):
            for label, cap in caps:
                on = f"sqlite+aiosqlite:///{tmp}/on-{label[:2]}.db"
                off = f"sqlite+aiosqlite:///{tmp}/off-{label[:2]}.db"
                result = asyncio.run(measure(on, off, args.requests, cap))
                rows.append((f"SQLite, {label}", result))
        if args.only in (None, "postgres"):
            from tests.services import create_database, postgres_cluster

            with postgres_cluster() as server:
                for label, cap in caps:
                    on = asyncio.run(create_database(server))
                    off = asyncio.run(create_database(server))
                    result = asyncio.run(measure(on, off, args.requests, cap))
                    rows.append((f"PostgreSQL, {label}", result))
    print(f"admission + settle per request (n=2 images, {args.requests} requests, p50)")
    print(f"{'database, key':20} {'billing on':>11} {'billing off':>12} {'added':>9} {'ratio':>7}")
    for name, r in rows:
        print(
            f"{name:20} {r['p50_on_ms']:9.2f}ms {r['p50_off_ms']:10.2f}ms "
            f"{r['added_ms']:7.2f}ms {r['ratio']:7.3f}"
        )


if __name__ == "__main__":
    main()
