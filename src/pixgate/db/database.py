"""The async database handle: SQLite (WAL) embedded, PostgreSQL at scale."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

_MIGRATIONS = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"^(down_revision|revision) = (?:\"([^\"]*)\"|None)$", re.M)


def head_revisions() -> set[str]:
    """The migration chain's head(s), read from the version files' `revision` and
    `down_revision` lines (cheap: no Alembic import)."""
    revisions, parents = set(), set()
    for file in (_MIGRATIONS / "versions").glob("*.py"):
        for name, value in _REVISION.findall(file.read_text(encoding="utf-8")):
            if value:
                (revisions if name == "revision" else parents).add(value)
    return revisions - parents


class Database:
    """Owns the engine. `write()` is a transaction that may change rows; on SQLite it holds
    an in-process lock and starts with BEGIN IMMEDIATE, so writers queue instead of
    failing with 'database is locked' or sleeping in SQLite's busy handler."""

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict = {}
        if self.is_sqlite:
            path = url.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Every session ends its transaction itself (commit, or rollback on close), so
            # the pool's own rollback on check-in is a second round trip to the SQLite
            # thread for nothing.
            kwargs.update(pool_reset_on_return=None)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine.sync_engine)
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        write_engine = self.engine.execution_options(pixgate_immediate=True)
        self._write = async_sessionmaker(write_engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        if self._write_lock is None:
            async with self._write() as session, session.begin():
                yield session
            return
        async with self._write_lock, self._write() as session, session.begin():
            yield session

    async def at_head(self) -> bool:
        """Whether the database is already at the migrations' head: then a start need not
        import Alembic (a third of an API node's start)."""
        try:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        except Exception:  # no alembic_version table yet (a new database)
            return False
        return {row[0] for row in rows} == head_revisions()

    async def migrate(self) -> None:
        """Apply Alembic migrations up to head (idempotent)."""
        if await self.at_head():
            return
        from alembic import command
        from alembic.config import Config

        def upgrade(connection) -> None:  # runs in the sync greenlet bridge
            cfg = Config()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

        async with self.engine.connect() as conn:
            if self.is_sqlite:
                # SQLite's batch migrations rebuild tables; with foreign keys enforced, that
                # fails once other tables point at them. PRAGMA only works outside a
                # transaction, so set it on the raw connection first.
                raw = await conn.get_raw_connection()
                await raw.driver_connection.execute("PRAGMA foreign_keys=OFF")
            try:
                async with conn.begin():
                    if not self.is_sqlite:  # nodes starting together migrate one at a time
                        await conn.execute(text("SELECT pg_advisory_xact_lock(7274920)"))
                    await conn.run_sync(upgrade)
            finally:
                if self.is_sqlite:
                    await raw.driver_connection.execute("PRAGMA foreign_keys=ON")

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(sync_engine) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn) -> None:
        immediate = conn.get_execution_options().get("pixgate_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
