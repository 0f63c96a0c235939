"""Workers that say what they serve: heartbeat rows (pixgate.queue.registry), `pixgate
worker --models`, `GET /admin/workers`, `pixgate workers`, and a job for a model no live
worker serves (it says so, then fails free after the generation timeout)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from pixgate.db import Database, Job, WorkerRow, utcnow
from pixgate.queue import registry
from pixgate.queue.jobs import JobQueue
from pixgate.queue.registry import Registration
from pixgate.spec.catalog import ModelSpec
from tests.conftest import GENERATIONS, INSTANT, balance

PIXGATE = [sys.executable, "-m", "pixgate"]
OTHER = ModelSpec(name="other", source="fake:", sizes=["256x256"], default_size="256x256")
RELAYED = ModelSpec(name="relayed", source="channel:up")
PRICED = ModelSpec(
    name="priced", source="fake:", sizes=["256x256"], default_size="256x256", price="0.5"
)


def _db(tmp_path) -> Database:
    return Database(f"sqlite+aiosqlite:///{tmp_path / 'reg.db'}")


async def _rows(db: Database) -> list[WorkerRow]:
    async with db.read() as s:
        return list((await s.scalars(select(WorkerRow))).all())


async def _age(db: Database, worker_id: str, seconds: float) -> None:
    async with db.write() as s:
        await s.execute(
            update(WorkerRow)
            .where(WorkerRow.id == worker_id)
            .values(last_seen=utcnow() - timedelta(seconds=seconds))
        )


# --- the registry on SQLite ------------------------------------------------------------
def test_register_heartbeat_current_job_and_clean_stop(tmp_path):
    async def go():
        db = _db(tmp_path)
        await db.migrate()
        queue = JobQueue(db, max_queue=10)
        reg = Registration(db, "w-1", [INSTANT, RELAYED], heartbeat_seconds=3600)
        try:
            await reg.start()
            [row] = await _rows(db)
            assert (row.id, row.models, row.pid) == ("w-1", ["instant", "relayed"], os.getpid())
            assert row.device == "cpu,relay" and row.current_job_id is None

            # a job it claims is its current job: at the next heartbeat in the row, at
            # once in the view (read from the job table)
            job_id = await queue.enqueue_unbilled("txt2img", "instant", {"prompt": "x"}, 1, 1)
            assert (await queue.claim("w-1", 30)).id == job_id
            [info] = await registry.live_workers(db)
            assert info.live and info.current_job_id == job_id and info.running == 1
            before = row.last_seen
            await reg.beat()
            [row] = await _rows(db)
            assert row.current_job_id == job_id and row.last_seen >= before
            await queue.fail(job_id, "generation_failed", "x", "w-1")
            await reg.beat()
            assert (await _rows(db))[0].current_job_id is None
            assert (await registry.live_workers(db))[0].current_job_id is None
            assert await registry.served_models(db) == {"instant", "relayed"}
        finally:
            await reg.stop()
        assert await _rows(db) == []  # a clean stop deletes the row
        assert await registry.live_workers(db) == []
        await db.dispose()

    asyncio.run(go())


def test_live_dead_pruned_and_a_vanished_row_comes_back(tmp_path):
    async def go():
        db = _db(tmp_path)
        await db.migrate()
        live = Registration(db, "w-live", [INSTANT], heartbeat_seconds=5)
        dead = Registration(db, "w-dead", [OTHER], heartbeat_seconds=5)
        old = Registration(db, "w-old", [OTHER], heartbeat_seconds=5)
        for reg in (live, dead, old):
            await reg.start()
            reg._task.cancel()  # beats by hand below
        await _age(db, "w-dead", 16)  # more than 3 heartbeats of 5 s: not live
        await _age(db, "w-old", 2 * 86400)  # two days: pruned at the next heartbeat

        assert [w.id for w in await registry.live_workers(db, 5)] == ["w-live"]
        shown = await registry.live_workers(db, 5, registry.DEAD_SHOWN)
        assert {w.id: w.live for w in shown} == {"w-live": True, "w-dead": False}
        assert await registry.served_models(db, 5) == {"instant"}
        assert await registry.waiting_reason(db, "other", "txt2img", 5) == (
            "no live worker serves model other"
        )
        assert await registry.waiting_reason(db, "instant", "txt2img", 5) is None
        assert await registry.waiting_reason(db, "other", "mark", 5) is None  # any worker

        await live.beat()  # prunes rows unseen for a day
        assert {r.id for r in await _rows(db)} == {"w-live", "w-dead"}

        await _age(db, "w-dead", 0)  # it heartbeats again: live again
        assert {w.id for w in await registry.live_workers(db, 5)} == {"w-live", "w-dead"}

        await live.stop()
        assert {r.id for r in await _rows(db)} == {"w-dead"}
        await live.beat()  # a worker whose row vanished writes it again
        assert {r.id for r in await _rows(db)} == {"w-live", "w-dead"}
        for reg in (live, dead, old):
            await reg.stop()
        assert await _rows(db) == []
        assert await registry.waiting_reason(db, "instant", "mark", 5) == "no live worker"
        await db.dispose()

    asyncio.run(go())


def test_the_heartbeat_task_keeps_a_worker_live(tmp_path):
    async def go():
        db = _db(tmp_path)
        await db.migrate()
        reg = Registration(db, "w-beat", [INSTANT], heartbeat_seconds=0.1)
        await reg.start()
        try:
            first = (await _rows(db))[0].last_seen
            await asyncio.sleep(0.5)  # several heartbeats: 3 missed would make it dead
            [info] = await registry.live_workers(db, 0.1)
            assert info.live and info.last_seen > first
        finally:
            await reg.stop()
        await db.dispose()

    asyncio.run(go())


def test_only_unserved_jobs_that_waited_the_timeout_are_failed(tmp_path):
    async def go():
        db = _db(tmp_path)
        await db.migrate()
        queue = JobQueue(db, max_queue=10)
        reg = Registration(db, "w-i", [INSTANT], heartbeat_seconds=5)
        await reg.start()
        try:
            served_old = await queue.enqueue_unbilled("txt2img", "instant", {}, 1, 1)
            unserved_old = await queue.enqueue_unbilled("txt2img", "other", {}, 1, 1)
            unserved_new = await queue.enqueue_unbilled("txt2img", "other", {}, 1, 1)
            async with db.write() as s:
                await s.execute(
                    update(Job)
                    .where(Job.id.in_([served_old, unserved_old]))
                    .values(created_at=utcnow() - timedelta(seconds=60))
                )
            assert await registry.fail_unserved(queue, 5, timeout=30) == 1
            status = {j: (await queue.get(j)).status for j in (served_old, unserved_new)}
            assert status == {served_old: "queued", unserved_new: "queued"}
            failed = await queue.get(unserved_old)
            assert (failed.status, failed.error_code) == ("failed", "generation_timeout")
            assert "no live worker serves model other" in failed.error_message
        finally:
            await reg.stop()
        await db.dispose()

    asyncio.run(go())


# --- pixgate worker --models --------------------------------------------------------------
def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        [*PIXGATE, *args], capture_output=True, text=True, timeout=120, env=env, **kw
    )


def _config(tmp_path) -> str:
    path = tmp_path / "pixgate.toml"
    path.write_text(
        'demo = false\ndefault_model = "instant"\n'
        + "".join(
            f'[[models]]\nname = "{m}"\nsource = "fake:"\nsizes = ["256x256"]\n'
            f'default_size = "256x256"\n'
            for m in ("instant", "other")
        )
    )
    return str(path)


def test_worker_models_refuses_an_unknown_name(tmp_path):
    from typer.testing import CliRunner

    from pixgate.cli import app

    args = ["worker", "--config", _config(tmp_path), "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--models", "other,nope"])
    assert result.exit_code == 2
    assert "--models: unknown model(s) nope" in result.stderr
    assert "the catalog has: instant, other" in result.stderr


@pytest.mark.slow
def test_worker_with_models_claims_only_those_and_is_listed(tmp_path):
    """`pixgate worker --models other` registers serving `other` only, `pixgate workers`
    lists it, and a stop (SIGTERM) removes its row."""
    data = ["--config", _config(tmp_path), "--data-dir", str(tmp_path)]
    env = {**os.environ, "PIXGATE_WORKER_HEARTBEAT_SECONDS": "0.5"}
    proc = subprocess.Popen(
        [*PIXGATE, "worker", *data, "--models", "other"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'pixgate.db'}")
    try:
        deadline = time.monotonic() + 60
        rows: list[WorkerRow] = []
        while not rows:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.2)
            try:
                rows = asyncio.run(_rows(db))
            except Exception:  # not migrated yet
                rows = []
        assert rows[0].models == ["other"] and rows[0].device == "cpu"
        listed = _cli("workers", *data)
        assert listed.returncode == 0, listed.stderr
        assert rows[0].id in listed.stdout and "live" in listed.stdout
        assert "served: other" in listed.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert asyncio.run(_rows(db)) == []
    assert "no live workers" in _cli("workers", *data).stdout
    asyncio.run(db.dispose())


# --- the server -------------------------------------------------------------------------
def test_admin_workers_lists_the_in_process_worker(make_server):
    srv = make_server(models=[INSTANT, OTHER], demo=False, default_model="instant")
    admin = srv.create_key(role="admin")
    user = srv.create_key()
    with srv.client(admin) as c:
        r = c.get("/admin/workers")
    assert r.status_code == 200, r.text
    body = r.json()
    [worker] = body["data"]
    assert worker["id"] == srv.core.worker.id and worker["live"] is True
    assert worker["models"] == ["instant", "other"] and worker["pid"] == os.getpid()
    assert worker["device"] == "cpu" and body["served_models"] == ["instant", "other"]
    with srv.client(user) as c:
        assert c.get("/admin/workers").status_code == 403
    with srv.client() as c:
        assert c.get("/admin/workers").status_code == 401
    # embedded: the in-process worker registered before admission opened, so no job of
    # this server ever reads "no live worker"
    with srv.client(user) as c:
        r = c.post(GENERATIONS, json={"model": "instant", "prompt": "x", "async": True})
        assert r.status_code == 202 and "waiting" not in r.json(), r.text
    srv.stop()
    assert asyncio.run(_rows(Database(srv.settings.db_url))) == []  # removed at stop


def test_a_job_no_live_worker_serves_waits_then_fails_free(make_server):
    srv = make_server(
        models=[PRICED, OTHER],
        demo=False,
        default_model="priced",
        run_workers=False,
        generation_timeout_seconds=1.5,
        sweep_interval_seconds=0.2,
    )
    db = Database(srv.settings.db_url)

    async def other_worker() -> None:  # a live worker, serving another model only
        reg = Registration(db, "w-other", [OTHER], heartbeat_seconds=60)
        await reg.start()
        reg._task.cancel()
        await db.dispose()

    asyncio.run(other_worker())
    key = srv.create_key(credit="10")
    with srv.client(key) as c:
        r = c.post(GENERATIONS, json={"model": "priced", "prompt": "x", "async": True})
        assert r.status_code == 202, r.text
        task = r.json()
        assert task["status"] == "queued"
        assert task["waiting"] == "waiting: no live worker serves model priced"
        assert balance(srv, key) == Decimal("9.5")  # reserved
        listed = c.get("/v1/tasks").json()["data"]
        assert listed[0]["waiting"] == task["waiting"]
        deadline = time.monotonic() + 30
        while task["status"] == "queued":
            assert time.monotonic() < deadline, task
            time.sleep(0.2)
            task = c.get(f"/v1/tasks/{task['id']}").json()
    assert task["status"] == "failed" and "waiting" not in task
    assert task["error"]["code"] == "generation_timeout"
    assert balance(srv, key) == Decimal("10")  # refunded: nothing charged
    job = asyncio.run(_job(db, task["id"]))
    assert job.error_message.startswith("no live worker serves model priced")
    assert job.cost_minor == 0


async def _job(db: Database, job_id: str) -> Job:
    try:
        async with db.read() as s:
            return await s.get(Job, job_id)
    finally:
        await db.dispose()
