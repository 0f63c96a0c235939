"""Notifications: a finish, a queued job and a cancellation reach waiters, the worker and
the running generation of this process at once; polling still finds what other processes
did (a second JobQueue on the same SQLite file stands in for another machine)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from pixgate.db import Database, Job
from pixgate.queue.jobs import JobQueue
from pixgate.queue.notifications import CANCELLED_REMEMBERED, InProcessNotifications, Signal
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest
from tests.conftest import GENERATIONS, RunningServer

TASKS = "/v1/tasks"
FAKE = {"sizes": ["64x64"], "default_size": "64x64", "max_steps": 200, "default_steps": 1}
INSTANT = ModelSpec(name="fake-now", source="fake:", **FAKE)
TIMED = ModelSpec(name="fake-600ms", source="fake:delay=0.6", **FAKE)  # one step
SLOW = ModelSpec(name="fake-slow", source="fake:delay=0.1,steps=100", **FAKE)  # 10 s
POLL = 30.0  # worker_poll_seconds where only a notification can explain a quick reaction


def _request(model: str) -> dict:
    return {"model": model, "prompt": "x", "size": "64x64", "num_inference_steps": 1}


def _when(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _latest_task(c: httpx.Client) -> dict:
    return c.get(TASKS).json()["data"][0]


def _job(srv: RunningServer, job_id: str) -> Job:
    """The job's row, read as another process would."""

    async def read():
        db = Database(srv.settings.db_url)
        try:
            return await JobQueue(db, max_queue=1).get(job_id)
        finally:
            await db.dispose()

    return asyncio.run(read())


# --- in one process, over HTTP ----------------------------------------------------------
@pytest.fixture
def srv(make_server) -> RunningServer:
    return make_server(models=[INSTANT, TIMED, SLOW], demo=False, worker_poll_seconds=POLL)


def test_sync_request_returns_as_soon_as_its_job_finishes(srv: RunningServer):
    """The waiting request would poll at 0.5 s, 1.5 s, 3.5 s...: a 0.6 s job answered
    within a fraction of that was woken by the finish itself."""
    k = srv.create_key()
    with srv.client(k) as c:
        r = c.post(GENERATIONS, json=_request(TIMED.name))
        answered = datetime.now(UTC)
        assert r.status_code == 200, r.text
        task = _latest_task(c)
    assert task["status"] == "succeeded"
    lag = (answered - _when(task["finished_at"])).total_seconds()
    assert lag < 0.3, f"answered {lag:.2f} s after the job finished"


def test_idle_worker_claims_a_queued_job_at_once(srv: RunningServer):
    k = srv.create_key()
    with srv.client(k) as c:
        for _ in range(3):  # each one finds the worker idle, waiting up to POLL seconds
            start = time.monotonic()
            assert c.post(GENERATIONS, json=_request(INSTANT.name)).status_code == 200
            assert time.monotonic() - start < POLL / 3
            job = _job(srv, _latest_task(c)["id"])
            waited = (job.started_at - job.created_at).total_seconds()
            assert waited < 0.3, f"claimed {waited:.2f} s after it was queued"


def test_cancel_stops_a_running_generation_at_its_next_step(srv: RunningServer):
    k = srv.create_key()
    with srv.client(k) as c:
        r = c.post(GENERATIONS, json={**_request(SLOW.name), "async": True})
        assert r.status_code == 202, r.text
        task_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while c.get(f"{TASKS}/{task_id}").json()["status"] != "running":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        cancelled = c.post(f"{TASKS}/{task_id}/cancel").json()
        assert cancelled["status"] == "cancelled"
        # The engine thread is free again within a step (0.1 s), not after the 10 s job.
        start = time.monotonic()
        assert c.post(GENERATIONS, json=_request(INSTANT.name)).status_code == 200
        assert time.monotonic() - start < 3
        assert c.get(f"{TASKS}/{task_id}").json()["progress"] < 1


def test_jobs_of_another_process_are_found_by_polling(make_server):
    """Another process queues a job (the worker here gets no notification) and waits for
    it (its own queue gets no notification of the finish): both sides poll."""
    srv = make_server(models=[INSTANT], demo=False, worker_poll_seconds=0.2)
    spec = srv.core.catalog.get(INSTANT.name)
    req = GenerationRequest(
        model=INSTANT.name, prompt="x", width=64, height=64, n=1, seed=1, steps=1, guidance=1
    )

    async def other_process():
        db = Database(srv.settings.db_url)
        try:
            queue = JobQueue(db, max_queue=10)
            job_id = await queue.enqueue(req, spec, None, None)
            return await queue.wait(job_id, timeout=30, max_poll=0.2, first_poll=0.05)
        finally:
            await db.dispose()

    start = time.monotonic()
    job = asyncio.run(other_process())
    assert job is not None and job.status == "succeeded" and len(job.images) == 1
    assert time.monotonic() - start < 10


# --- the queue and the in-process implementation ---------------------------------------
@pytest.fixture
def queue(tmp_path) -> JobQueue:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'q.db'}")

    async def prepare():  # pooled connections belong to a loop: release them after
        await db.migrate()
        await db.dispose()

    asyncio.run(prepare())
    return JobQueue(db, max_queue=10)


REQ = GenerationRequest(
    model="fake-now", prompt="p", width=64, height=64, n=1, seed=1, steps=1, guidance=1
)


def test_wait_ends_on_the_finish_not_the_next_poll(queue: JobQueue):
    async def go():
        job_id = await queue.enqueue(REQ, INSTANT, None, None)
        waiting = asyncio.create_task(queue.wait(job_id, timeout=30, max_poll=10, first_poll=10))
        job = await queue.claim("w1", 30)
        await asyncio.sleep(0.2)  # the job runs; the waiter sits in its 10 s poll
        assert not waiting.done()
        await queue.succeed(job, "w1", [], 0.2)
        finished = time.monotonic()
        done = await waiting
        await queue.db.dispose()
        return done, time.monotonic() - finished

    done, lag = asyncio.run(go())
    assert done.status == "failed" and done.error_code == "generation_failed"  # no images
    assert lag < 0.5


def test_cancel_reaches_the_running_job_only(queue: JobQueue):
    async def go():
        notes = queue.notifications
        running = await queue.enqueue(REQ, INSTANT, None, None)
        queued = await queue.enqueue(REQ, INSTANT, None, None)
        await queue.claim("w1", 30)
        owner_cancel = await queue.fail(
            running, "cancelled", "by the client", statuses=("queued", "running")
        )
        assert owner_cancel.settled
        await queue.fail(queued, "cancelled", "by the client", statuses=("queued",))
        # the engine thread asks from another thread
        seen = await asyncio.to_thread(
            lambda: (notes.is_cancelled(running), notes.is_cancelled(queued))
        )
        notes.forget(running)
        await queue.db.dispose()
        return seen, notes.is_cancelled(running)

    seen, after_forget = asyncio.run(go())
    assert seen == (True, False)  # the queued job never ran: nothing to stop
    assert after_forget is False


def test_signal_set_from_another_thread_wakes_its_loop():
    signal = Signal()

    async def go():
        assert not await signal.wait(0.01)  # binds the loop
        threading.Timer(0.1, signal.set).start()
        start = time.monotonic()
        assert await signal.wait(10)
        return time.monotonic() - start

    assert asyncio.run(go()) < 2
    assert asyncio.run(signal.wait(0))  # still set, and usable from a new loop
    signal.clear()
    assert not asyncio.run(signal.wait(0))


def test_in_process_notifications_forget_what_nobody_holds():
    notes = InProcessNotifications()
    queued, finished = notes.queued_signal(), notes.finished_signal()
    with notes.watch_finished("a") as a:
        notes.job_queued()
        notes.job_finished("b")
        assert queued.is_set() and finished.is_set() and not a.is_set()
        notes.job_finished("a")
        assert a.is_set()
    assert notes._watchers == {}
    del queued
    notes.job_queued()  # a dropped signal is simply gone
    assert len(notes._queued) == 0
    for i in range(CANCELLED_REMEMBERED + 5):
        notes.job_cancelled(str(i))
    assert not notes.is_cancelled("0") and notes.is_cancelled(str(CANCELLED_REMEMBERED + 4))
