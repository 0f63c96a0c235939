"""The job queue's guarantees: lapsed leases are retried or failed-and-released, a job
is settled once, and the usage reservation always returns to zero."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import update

from pixgate.accounts import keys, users
from pixgate.db import Database, Job, utcnow
from pixgate.queue.jobs import Admission, JobQueue
from pixgate.spec.catalog import TINY_SD
from pixgate.spec.request import GenerationRequest
from tests.conftest import generate

REQ = GenerationRequest(
    model="tiny-sd", prompt="p", width=256, height=256, n=2, seed=1, steps=1, guidance=7.5
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Database(url)

    async def prepare():  # pooled connections belong to a loop: release them after
        await database.migrate()
        await database.dispose()

    asyncio.run(prepare())
    return database


def run(coro):
    return asyncio.run(coro)


async def _setup(db: Database, cap: int | None = 10):
    user = await users.create_user(db, users.NewUser(f"u-{uuid.uuid4().hex[:8]}"))
    created = await keys.create_key(db, user.id, keys.KeySpec(image_cap=cap))
    key = (await keys.authenticate(db, created.key)).key
    return JobQueue(db, max_queue=10), key


async def _usage(db: Database, key) -> tuple[int, int]:
    key_id = key.id
    rows = await keys.list_keys(db)
    row = next(r for r in rows if r.id == key_id)
    return row.images_used, row.images_reserved


async def _expire_lease(db: Database, job_id: str) -> None:
    async with db.write() as s:
        await s.execute(
            update(Job).where(Job.id == job_id).values(lease_until=utcnow() - timedelta(seconds=1))
        )


def test_lapsed_lease_requeued_then_failed_and_released(db):
    async def go():
        queue, key = await _setup(db)
        job_id = await queue.enqueue(REQ, TINY_SD, Admission(key), None)
        assert await _usage(db, key) == (0, 2)
        job = await queue.claim("w1", 30)
        assert job.id == job_id and job.attempts == 1
        assert await queue.claim("w2", 30) is None  # nothing else queued
        await _expire_lease(db, job_id)
        assert await queue.reap_lapsed(max_attempts=2) == (1, 0)
        job = await queue.claim("w2", 30)
        assert job.id == job_id and job.attempts == 2
        # the first worker wakes up late: its result is refused, nothing charged twice
        late = await queue.succeed(job, "w1", [{"path": "x"}], 0.1)
        assert not late.settled
        await _expire_lease(db, job_id)
        assert await queue.reap_lapsed(max_attempts=2) == (0, 1)
        final = await queue.get(job_id)
        assert final.status == "failed" and final.error_code == "worker_lost"
        assert await _usage(db, key) == (0, 0)
        await db.dispose()

    run(go())


def test_settle_charges_only_successful_images_once(db):
    async def go():
        queue, key = await _setup(db)
        job_id = await queue.enqueue(REQ, TINY_SD, Admission(key), None)
        job = await queue.claim("w1", 30)
        one_image = [{"path": "a", "expires": 0, "seed": 1, "format": "png"}]
        assert (await queue.succeed(job, "w1", one_image, 0.2)).settled
        assert not (await queue.succeed(job, "w1", one_image, 0.2)).settled
        assert not (await queue.fail(job_id, "x", "y", "w1")).settled
        assert await _usage(db, key) == (1, 0)
        final = await queue.get(job_id)
        assert final.n_succeeded == 1 and final.status == "succeeded"
        await db.dispose()

    run(go())


def test_cap_is_atomic_under_concurrent_admission(db):
    """30 concurrent admissions of 2 images against a cap of 7: exactly 3 admitted."""
    from pixgate.errors import PixgateError

    async def go():
        queue, key = await _setup(db, cap=7)
        queue.max_queue = 100
        results = await asyncio.gather(
            *(queue.enqueue(REQ, TINY_SD, Admission(key), None) for _ in range(30)),
            return_exceptions=True,
        )
        admitted = [r for r in results if isinstance(r, str)]
        refused = [r for r in results if isinstance(r, PixgateError)]
        assert len(admitted) == 3 and len(refused) == 27
        assert all(r.code == "image_cap_reached" and r.status == 429 for r in refused)
        assert await _usage(db, key) == (0, 6)
        await db.dispose()

    run(go())


def test_cap_holds_across_two_processes_sharing_sqlite(tmp_path):
    """Two OS processes admit against one SQLite file: the cap still holds."""
    import subprocess
    import sys

    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    database = Database(url)
    asyncio.run(database.migrate())

    async def make_key():
        user = await users.create_user(database, users.NewUser("two-procs"))
        made = await keys.create_key(database, user.id, keys.KeySpec(image_cap=9))
        key_id = made.id
        await database.dispose()
        return key_id

    key_id = asyncio.run(make_key())
    script = f"""
import asyncio
from pixgate.spec.catalog import TINY_SD
from pixgate.db import Database
from pixgate.errors import PixgateError
from pixgate.queue.jobs import Admission, JobQueue
from pixgate.accounts.keys import find_key
from pixgate.spec.request import GenerationRequest
req = GenerationRequest(model="tiny-sd", prompt="p", width=256, height=256, n=1, seed=1,
                        steps=1, guidance=7.5)
async def main():
    db = Database({url!r})
    q = JobQueue(db, max_queue=1000)
    key = await find_key(db, {key_id!r})
    ok = 0
    for _ in range(20):
        try:
            await q.enqueue(req, TINY_SD, Admission(key), None)
            ok += 1
        except PixgateError:
            pass
    await db.dispose()
    print(ok)
asyncio.run(main())
"""
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    counts = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    assert sum(counts) == 9


@pytest.mark.postgres
def test_http_generation_on_postgres(make_server, postgres_url):
    """The whole request path with PostgreSQL as the database and queue."""
    srv = make_server(database_url=postgres_url)
    k = srv.create_key(images=3)
    with srv.client(k) as c:
        r = generate(c, n=2, seed=11)
        assert r.status_code == 200, r.text
        assert c.get(r.json()["data"][1]["url"]).status_code == 200
        assert generate(c, n=2).status_code == 429
    row = srv.key_row(k)
    assert row.images_used == 2 and row.images_reserved == 0


def test_claim_takes_exactly_as_many_as_asked_and_only_filtered_models(db):
    """On PostgreSQL an `id IN (... LIMIT n FOR UPDATE SKIP LOCKED)` claim took every
    queued job; claims take n, oldest first, of the lane's models only."""
    from pixgate.queue.claims import ClaimFilter

    async def go():
        queue, key = await _setup(db, cap=None)
        ids = [await queue.enqueue(REQ, TINY_SD, Admission(key), None) for _ in range(5)]
        assert [j.id for j in await queue.claim_many("w1", 30, None, 2)] == ids[:2]
        assert (await queue.claim("w2", 30)).id == ids[2]
        assert await queue.claim("w3", 30, ClaimFilter(["other-model"])) is None
        assert [j.id for j in await queue.claim_many("w4", 30, ClaimFilter(["tiny-sd"]), 5)] == ids[
            3:
        ]
        await db.dispose()

    run(go())
