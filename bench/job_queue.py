"""The job queue: (a) claim latency by queue depth, SQLite and PostgreSQL; (b) how long a
sync request waits after its job finished in another process, LISTEN/NOTIFY against
polling; (c) throughput of one and two workers on the fake backend (PostgreSQL). Each
compares against a baseline measured in the same run.

    .venv/bin/python bench/job_queue.py                  # all three
    .venv/bin/python bench/job_queue.py --only claim     # or finish, throughput
    .venv/bin/python bench/job_queue.py --claims 300 --waits 100 --jobs 120

PostgreSQL is started from Debian's packages (scripts/services installs them) in a
temporary folder, as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from pixgate.db import Database  # noqa: E402
from pixgate.queue.jobs import JobQueue  # noqa: E402
from pixgate.queue.notifications import InProcessNotifications, Notifications  # noqa: E402
from pixgate.queue.notify_pg import PgNotifications  # noqa: E402
from pixgate.spec.catalog import ModelSpec  # noqa: E402
from pixgate.spec.request import GenerationRequest  # noqa: E402

FAKE = {"sizes": ["64x64"], "default_size": "64x64"}
SPEC = ModelSpec(name="bench", source="fake:", **FAKE)
REQ = GenerationRequest(
    model="bench", prompt="p", width=64, height=64, n=1, seed=1, steps=1, guidance=1
)
IMAGES = [{"path": "x", "expires": 0, "seed": 1, "format": "png"}]
DEPTHS = (1, 8, 64)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


# --- (a) claim latency ------------------------------------------------------------------
async def claim_latency(url: str, depth: int, claims: int) -> list[float]:
    """Keep `depth` jobs waiting; time each claim (refilled and settled untimed)."""
    db = Database(url)
    await db.migrate()
    queue = JobQueue(db, max_queue=10**6, billing_enabled=False)
    try:
        for _ in range(depth):
            await queue.enqueue(REQ, SPEC, None, None)
        for _ in range(20):  # warm up
            job = await queue.claim("bench", 30)
            await queue.succeed(job, "bench", IMAGES, 0.0)
            await queue.enqueue(REQ, SPEC, None, None)
        times = []
        for _ in range(claims):
            start = time.perf_counter()
            job = await queue.claim("bench", 30)
            times.append(time.perf_counter() - start)
            assert job is not None
            await queue.succeed(job, "bench", IMAGES, 0.0)
            await queue.enqueue(REQ, SPEC, None, None)
        return times
    finally:
        await db.dispose()


def bench_claims(urls: dict[str, str], claims: int) -> None:
    print(f"\n(a) claim latency, {claims} claims at a constant queue depth")
    print(f"{'database':12} {'depth':>5} {'p50':>9} {'p99':>9} {'p50 vs depth 1':>15}")
    for name, make_url in urls.items():
        base = None
        for depth in DEPTHS:
            times = asyncio.run(claim_latency(make_url(), depth, claims))
            p50 = statistics.median(times) * 1000
            base = base or p50
            print(
                f"{name:12} {depth:5} {p50:7.2f}ms {_pct(times, 0.99):7.2f}ms {p50 / base:14.2f}x"
            )


# --- (b) finish -> response ---------------------------------------------------------------
class Stamped:
    """A's notifications, recording when each job_finished was sent."""

    def __init__(self, inner: Notifications) -> None:
        self.inner = inner
        self.sent: dict[str, float] = {}

    def job_finished(self, job_id: str, webhook: bool = True, row=None) -> None:
        self.sent[job_id] = time.perf_counter()
        self.inner.job_finished(job_id, webhook, row)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


async def finish_latency(url: str, notify: bool, waits: int) -> tuple[list[float], int]:
    """B (an API node) enqueues and waits as a sync request does (first poll 0.05 s,
    growing to 1 s: worker_poll_seconds' default x 2); A (a worker process) claims, works
    50-1000 ms and settles. Returns the lags from A's job_finished to B's wait returning."""
    db_a, db_b = Database(url), Database(url)
    await db_a.migrate()
    pg_a, pg_b = PgNotifications(url), PgNotifications(url)
    if notify:
        await pg_a.start()
        await pg_b.start()
    sender = Stamped(pg_a if notify else InProcessNotifications())
    worker = JobQueue(db_a, 10**6, False, notifications=sender)  # type: ignore[arg-type]
    api = JobQueue(db_b, 10**6, False, notifications=pg_b if notify else None)
    rng = random.Random(7)
    lags = []
    try:
        for _ in range(waits):
            job_id = await api.enqueue(REQ, SPEC, None, None)
            waiting = asyncio.create_task(api.wait(job_id, 30, max_poll=1.0, first_poll=0.05))
            job = await worker.claim("bench", 30)
            assert job is not None and job.id == job_id
            await asyncio.sleep(rng.uniform(0.05, 1.0))  # generating
            await worker.succeed(job, "bench", IMAGES, 0.0)
            done = await waiting
            lags.append(time.perf_counter() - sender.sent[job_id])
            assert done is not None and done.status == "succeeded"
        return lags, pg_b.heard
    finally:
        await pg_a.close()
        await pg_b.close()
        await db_a.dispose()
        await db_b.dispose()


def bench_finish(make_url, waits: int) -> None:
    print(f"\n(b) finish -> response across processes (PostgreSQL, {waits} sync waits)")
    print(f"{'waiter woken by':18} {'p50':>9} {'p99':>9} {'max':>9} {'p50 vs NOTIFY':>14}")
    notify, heard = asyncio.run(finish_latency(make_url(), True, waits))
    polled, _ = asyncio.run(finish_latency(make_url(), False, waits))
    base = statistics.median(notify)
    for name, lags in (("LISTEN/NOTIFY", notify), ("polling", polled)):
        p50 = statistics.median(lags)
        print(
            f"{name:18} {p50 * 1000:7.2f}ms {_pct(lags, 0.99):7.2f}ms "
            f"{max(lags) * 1000:7.2f}ms {p50 / base:13.1f}x"
        )
    verdict = "met" if _pct(notify, 0.99) < 20 else "MISSED"
    print(f"NOTIFY p99 target < 20 ms: {verdict}; notifications heard by B: {heard}")


# --- (c) throughput -----------------------------------------------------------------------
async def throughput(url: str, workers: int, jobs: int, tmp: str) -> float:
    """`workers` cores with a worker each (as separate `pixgate worker` processes would
    be) on one database; jobs per second through the whole worker (claim, fake backend
    at 0.1 s a job, store, settle)."""
    from pixgate.core.service import Pixgate
    from pixgate.settings import load_settings

    model = {"name": "bench", "source": "fake:delay=0.1", **FAKE}
    cores = []
    for i in range(workers):
        settings = load_settings(
            None,
            data_dir=Path(tmp) / f"w{workers}-{i}",
            database_url=url,
            models=[model],
            demo=False,
            preload=False,
            max_queue=10**6,
            billing_enabled=False,
            log_level="WARNING",
            sweep_interval_seconds=3600,
            signing_secret="bench",
        )
        core = Pixgate(settings)
        await core.start(with_worker=True)
        cores.append(core)
    queue = cores[0].queue
    spec = cores[0].catalog.get("bench")
    try:
        start = time.perf_counter()
        ids = [await queue.enqueue(REQ, spec, None, None) for _ in range(jobs)]
        for job_id in ids:
            done = await queue.wait(job_id, 600, max_poll=0.2)
            assert done is not None and done.status == "succeeded", done and done.error_code
        return jobs / (time.perf_counter() - start)
    finally:
        for core in cores:
            await core.stop()


def bench_throughput(make_url, jobs: int, tmp: str) -> None:
    print(f"\n(c) throughput, fake backend at 0.1 s a job, {jobs} jobs (PostgreSQL)")
    print(f"{'workers':>7} {'jobs/s':>8} {'vs 1 worker':>12}")
    one = asyncio.run(throughput(make_url(), 1, jobs, tmp))
    two = asyncio.run(throughput(make_url(), 2, jobs, tmp))
    print(f"{1:7} {one:8.2f} {1.0:11.2f}x")
    print(f"{2:7} {two:8.2f} {two / one:11.2f}x  (target >= 1.8x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["claim", "finish", "throughput"])
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--waits", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=120)
    args = parser.parse_args()
    from tests.services import create_database, postgres_cluster

    from pixgate.logs import configure_logging

    configure_logging("WARNING", False)  # the workers' per-job lines would drown the tables
    with tempfile.TemporaryDirectory() as tmp, postgres_cluster() as server:
        counter = iter(range(10**6))

        def sqlite() -> str:
            return f"sqlite+aiosqlite:///{tmp}/claims-{next(counter)}.db"

        def postgres() -> str:
            return asyncio.run(create_database(server))

        if args.only in (None, "claim"):
            bench_claims({"SQLite": sqlite, "PostgreSQL": postgres}, args.claims)
        if args.only in (None, "finish"):
            bench_finish(postgres, args.waits)
        if args.only in (None, "throughput"):
            bench_throughput(postgres, args.jobs, tmp)


if __name__ == "__main__":
    main()
