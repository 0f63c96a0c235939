"""Migrations: a database made by an earlier release upgrades in place."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from alembic import command
from alembic.config import Config

from pixgate.accounts import keys
from pixgate.db import Database
from pixgate.db.database import _MIGRATIONS, head_revisions


def _upgrade_to(db: Database, revision: str) -> None:
    def upgrade(connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async def go():
        async with db.engine.begin() as conn:
            await conn.run_sync(upgrade)
        await db.dispose()

    asyncio.run(go())


def test_keys_from_0001_get_an_account_and_keep_working(tmp_path):
    path = tmp_path / "old.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    _upgrade_to(db, "0001")
    raw = "sk-oldkeyfromthefirstrelease0000000000000"
    con = sqlite3.connect(path)
    con.execute(
        "INSERT INTO api_keys (id, name, prefix, key_hash, display, image_cap, images_used, "
        "images_reserved, enabled, created_at) VALUES ('k1', 'old', 'sk-', ?, 'sk-oldk…0000', "
        "5, 2, 0, 1, '2026-11-01 00:00:00')",
        (keys.hash_key(raw),),
    )
    con.execute(
        "INSERT INTO jobs (id, key_id, model, kind, status, request, n, seed, price_minor, "
        "cost_minor, n_succeeded, attempts, created_at) VALUES ('j1', 'k1', 'tiny-sd', "
        "'txt2img', 'succeeded', '{}', 2, 1, 0, 0, 2, 1, '2026-11-01 00:00:00')"
    )
    con.commit()
    con.close()

    asyncio.run(db.migrate())  # to head

    async def check():
        try:
            caller = await keys.authenticate(db, raw)
            from pixgate.accounts.audit import audit

            return caller, await audit(db)
        finally:
            await db.dispose()

    caller, problems = asyncio.run(check())
    assert caller.user.name == "key-k1" and caller.key.images_used == 2
    assert problems == []
    con = sqlite3.connect(path)
    assert con.execute("SELECT user_id FROM jobs WHERE id = 'j1'").fetchone()[0] == caller.user.id


@pytest.mark.postgres
def test_nodes_starting_together_migrate_one_at_a_time(postgres_url):
    async def go():
        dbs = [Database(postgres_url) for _ in range(3)]
        try:
            await asyncio.gather(*(db.migrate() for db in dbs))
        finally:
            for db in dbs:
                await db.dispose()

    asyncio.run(go())


def test_jobs_from_0003_gain_task_and_webhook_columns(tmp_path):
    """0004: a job made before tasks had webhooks reads back with no webhook, and a new job
    can carry one; downgrading drops the columns and the attempts table again."""
    path = tmp_path / "old.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    _upgrade_to(db, "0003")
    con = sqlite3.connect(path)
    con.execute(
        "INSERT INTO jobs (id, model, kind, status, request, n, seed, price_minor, cost_minor, "
        "n_succeeded, attempts, created_at, progress) VALUES ('j1', 'tiny-sd', 'txt2img', "
        "'succeeded', '{}', 1, 1, 0, 0, 1, 1, '2026-11-01 00:00:00', 1.0)"
    )
    con.commit()
    con.close()

    asyncio.run(db.migrate())  # to head

    async def check():
        from sqlalchemy import insert, select

        from pixgate.db import Job, WebhookAttempt, utcnow

        try:
            async with db.read() as s:
                old = await s.get(Job, "j1")
            async with db.write() as s:
                await s.execute(
                    insert(WebhookAttempt).values(
                        job_id="j1", attempt=1, url="https://example.com/h", created_at=utcnow()
                    )
                )
            async with db.read() as s:
                recorded = (await s.scalars(select(WebhookAttempt))).all()
            return old, recorded
        finally:
            await db.dispose()

    old, recorded = asyncio.run(check())
    assert old.status == "succeeded" and old.task_status == "succeeded"
    assert old.webhook_url is None and old.webhook_status is None
    assert old.webhook_attempts == 0 and old.task_options is None
    assert [(a.job_id, a.attempt, a.duration_ms) for a in recorded] == [("j1", 1, 0)]

    _downgrade_to(db, "0003")
    con = sqlite3.connect(path)
    columns = {row[1] for row in con.execute("PRAGMA table_info(jobs)")}
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert "webhook_url" not in columns and "progress" in columns
    assert "webhook_attempts" not in tables


def _downgrade_to(db: Database, revision: str) -> None:
    def downgrade(connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    async def go():
        async with db.engine.begin() as conn:
            await conn.run_sync(downgrade)
        await db.dispose()

    asyncio.run(go())


def test_the_cheap_head_check_agrees_with_alembic(tmp_path):
    """A start skips Alembic when the database is at head; the head it reads from the
    version files is Alembic's, and an older database is still upgraded."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    assert head_revisions() == set(ScriptDirectory.from_config(cfg).get_heads())

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    _upgrade_to(db, "0005")

    async def go():
        before = await db.at_head()
        await db.migrate()
        after = await db.at_head()
        await db.dispose()
        return before, after

    assert asyncio.run(go()) == (False, True)
