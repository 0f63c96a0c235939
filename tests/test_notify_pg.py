"""LISTEN/NOTIFY between processes: two `PgNotifications` on one database stand in for two
machines (a queued job wakes the other's idle wait, a finish its waiter, a cancel its
running generation), they survive a lost connection, and two real `pixgate` processes
(an API node and a worker) answer a sync request long before any poll would."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from pixgate.db import Database
from pixgate.queue.jobs import JobQueue
from pixgate.queue.notifications import InProcessNotifications
from pixgate.queue.notify_pg import PgNotifications, asyncpg_dsn, notifications_for
from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest
from tests.conftest import GENERATIONS, _create_key, free_port

pytestmark = pytest.mark.postgres


def _pair(url: str, test: Callable[[PgNotifications, PgNotifications], Awaitable[None]]) -> None:
    """Run `test(a, b)` with two started instances on the database, as two processes."""

    async def go() -> None:
        a, b = PgNotifications(url), PgNotifications(url)
        await a.start()
        await b.start()
        assert a.connected.is_set() and b.connected.is_set()
        try:
            await test(a, b)
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_the_url_becomes_an_asyncpg_dsn():
    url = "postgresql+asyncpg://u:p%40ss@db.example:5433/pix?ssl=require"
    assert asyncpg_dsn(url) == "postgresql://u:p%40ss@db.example:5433/pix?ssl=require"
    assert isinstance(notifications_for(url), PgNotifications)
    assert type(notifications_for("sqlite+aiosqlite:///x.db")) is InProcessNotifications


def test_a_job_queued_on_one_wakes_the_idle_wait_of_the_other(postgres_url):
    async def test(a: PgNotifications, b: PgNotifications) -> None:
        wanted = b.queued_signal(lambda model, kind: model == "m1")
        other_model = b.queued_signal(lambda model, kind: model == "m2")
        for _ in range(3):
            wanted.clear()
            start = time.monotonic()
            a.job_queued("m1", "generate")
            assert await wanted.wait(1.0)
            assert time.monotonic() - start < 0.1
        await asyncio.sleep(0.05)
        assert not other_model.is_set()  # the lane filter applies to remote jobs too

    _pair(postgres_url, test)


def test_a_finish_on_one_ends_the_wait_on_the_other(postgres_url):
    async def test(a: PgNotifications, b: PgNotifications) -> None:
        webhooks = b.finished_signal()
        with b.watch_finished("job-1") as finished:
            a.job_finished("job-1", webhook=False)
            assert await finished.wait(1.0)
        await asyncio.sleep(0.05)
        assert not webhooks.is_set()  # no webhook: the deliverer is spared a look
        a.job_finished("job-2", webhook=True)
        assert await webhooks.wait(1.0)
        assert b.finished_row("job-1") is None  # rows stay in their process: B reads

    _pair(postgres_url, test)


def test_a_cancel_on_one_reaches_the_other_within_a_second(postgres_url):
    async def test(a: PgNotifications, b: PgNotifications) -> None:
        assert not b.is_cancelled("job-9")
        a.job_cancelled("job-9")
        deadline = time.monotonic() + 1.0
        while not b.is_cancelled("job-9"):  # how the engine's step callback asks
            assert time.monotonic() < deadline, "the cancel did not arrive within 1 s"
            await asyncio.sleep(0.005)

    _pair(postgres_url, test)


def test_sending_from_a_thread_and_own_notifications_once(postgres_url):
    async def test(a: PgNotifications, b: PgNotifications) -> None:
        seen: list[str] = []
        held = a.queued_signal(lambda model, kind: seen.append(model) or True)  # noqa: F841
        await asyncio.to_thread(a.job_queued, "m", "generate")  # from a worker thread
        deadline = time.monotonic() + 2
        while b.heard < 1:
            assert time.monotonic() < deadline, "B never heard A"
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # A hears its own NOTIFY too, and must drop it
        assert seen == ["m"]
        assert a.heard == 0

    _pair(postgres_url, test)


async def _terminate(dsn: str, pid: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


def test_a_lost_connection_comes_back(postgres_url):
    async def test(a: PgNotifications, b: PgNotifications) -> None:
        pid = a.backend_pid()
        assert pid is not None
        woken = a.queued_signal()
        await _terminate(a.dsn, pid)
        deadline = time.monotonic() + 10
        while a.backend_pid() in (None, pid) or not a.connected.is_set():
            assert time.monotonic() < deadline, "A did not reconnect"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        woken.clear()  # reconnecting woke it (what was sent meanwhile is lost)
        b.job_queued("m", "generate")
        assert await woken.wait(1.0)  # A listens again
        with b.watch_finished("job-3") as finished:
            a.job_finished("job-3")
            assert await finished.wait(1.0)  # and sends again

    _pair(postgres_url, test)


# --- through the queue: two JobQueues on one database -----------------------------------
SPEC = ModelSpec(name="fake-now", source="fake:", sizes=["64x64"], default_size="64x64")
IMAGES = [{"path": "x", "expires": 0, "seed": 1, "format": "png"}]
REQ = GenerationRequest(
    model="fake-now", prompt="p", width=64, height=64, n=1, seed=1, steps=1, guidance=1
)


def test_queues_of_two_processes_wake_each_other(postgres_url):
    async def test(a: PgNotifications, b: PgNotifications) -> None:
        db_a, db_b = Database(postgres_url), Database(postgres_url)
        await db_a.migrate()
        api, worker = JobQueue(db_a, 10, notifications=a), JobQueue(db_b, 10, notifications=b)
        try:
            idle = b.queued_signal()
            job_id = await api.enqueue(REQ, SPEC, None, None)
            assert await idle.wait(1.0)
            waiting = asyncio.create_task(api.wait(job_id, 30, max_poll=10, first_poll=10))
            job = await worker.claim("w1", 30)
            assert job is not None and job.id == job_id
            await asyncio.sleep(0.2)  # the waiter sits in its 10 s poll
            assert not waiting.done()
            finished = time.monotonic()
            await worker.succeed(job, "w1", IMAGES, 0.1)
            done = await waiting
            assert done is not None and done.status == "succeeded"
            assert time.monotonic() - finished < 0.5
            # The owner cancels on the API node; the running worker hears it.
            job_id = await api.enqueue(REQ, SPEC, None, None)
            job = await worker.claim("w1", 30)
            assert job is not None
            await api.fail(job_id, "cancelled", "by the client", statuses=("running",))
            deadline = time.monotonic() + 1
            while not b.is_cancelled(job_id):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
        finally:
            await db_a.dispose()
            await db_b.dispose()

    _pair(postgres_url, test)


# --- two real processes -------------------------------------------------------------------
POLL = 5.0  # worker_poll_seconds: a quick reaction can only come from a notification


def _start(command: str, config: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pixgate", command, "--config", config, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PIXGATE_LOG_LEVEL": "WARNING"},
    )


def _when(stamp: str) -> datetime:
    parsed = datetime.fromisoformat(stamp)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _row(url: str, job_id: str):
    db = Database(url)
    try:
        return await JobQueue(db, 1).get(job_id)
    finally:
        await db.dispose()


@pytest.mark.slow
def test_api_node_and_worker_processes_answer_at_once(
    make_settings, postgres_url, tmp_path, models_dir
):
    config = tmp_path / "node.toml"
    config.write_text(f"""
database_url = "{postgres_url}"
models_path = "{models_dir}"
data_dir = "{tmp_path / "data"}"
signing_secret = "shared-secret-for-both-nodes"
worker_poll_seconds = {POLL}
worker_prefetch = false
preload = false

[[models]]
name = "fake-1s"
source = "fake:delay=1"
sizes = ["64x64"]
default_size = "64x64"
max_steps = 4
default_steps = 1

[[models]]
name = "fake-slow"
source = "fake:delay=0.1,steps=100"
sizes = ["64x64"]
default_size = "64x64"
max_steps = 200
default_steps = 1
""")
    settings = make_settings(database_url=postgres_url, data_dir=tmp_path / "data")
    key = asyncio.run(_create_key(settings, None, "sk-", "paid", "10", "user", {}))
    port = free_port()
    api = _start("serve", str(config), "--no-workers", "--port", str(port))
    worker = _start("worker", str(config))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert api.poll() is None, api.communicate()[1]
            assert worker.poll() is None, worker.communicate()[1]
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "API node not ready"
            time.sleep(0.2)
        time.sleep(1.0)  # the worker is up and in its idle wait (POLL seconds long)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            body = {"model": "fake-1s", "prompt": "x", "size": "64x64"}
            for _ in range(2):
                start = time.monotonic()
                r = c.post(GENERATIONS, json=body)
                answered = datetime.now(UTC)
                assert r.status_code == 200, r.text
                # The wait would poll at 0.05, 0.15, 0.35, 0.75, 1.55, 3.15 s...
                assert time.monotonic() - start < 1.5
                task = c.get("/v1/tasks").json()["data"][0]
                lag = (answered - _when(task["finished_at"])).total_seconds()
                assert lag < 0.3, f"answered {lag:.2f} s after the job finished"
                job = asyncio.run(_row(postgres_url, task["id"]))
                claimed = (job.started_at - job.created_at).total_seconds()
                assert claimed < 0.3, f"claimed {claimed:.2f} s after it was queued"
            # A cancel on the API node stops the worker's generation within a second.
            r = c.post(GENERATIONS, json={**body, "model": "fake-slow", "async": True})
            assert r.status_code == 202, r.text
            task_id = r.json()["id"]
            deadline = time.monotonic() + 10
            while c.get(f"/v1/tasks/{task_id}").json()["status"] != "running":
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.02)
            assert c.post(f"/v1/tasks/{task_id}/cancel").json()["status"] == "cancelled"
            start = time.monotonic()  # the worker is free within a step, not after 10 s
            r = c.post(GENERATIONS, json=body)
            assert r.status_code == 200, r.text
            assert time.monotonic() - start < 1.0 + 1.5
    finally:
        for proc in (api, worker):
            proc.send_signal(signal.SIGTERM)
        for proc in (api, worker):
            proc.communicate(timeout=60)
