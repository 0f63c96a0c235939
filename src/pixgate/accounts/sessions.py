"""Console sessions, kept server-side: the browser holds a random token (in an HttpOnly
cookie), the database its SHA-256, the user, a CSRF token and the expiry.

A session expires after `idle_hours` without use (each use slides it forward) and, used
or not, `max_days` after login. Logging out deletes the row; "log out everywhere" and a
password change delete all of a user's rows (but the current one, for a password change).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from pixgate.db import ConsoleSession, Database, User, utcnow

# A session seen less than this long ago is not written again on every page view.
TOUCH_EVERY = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SessionPolicy:
    idle_hours: float
    max_days: float


@dataclass(frozen=True)
class NewSession:
    token: str  # the cookie's value: exists only in the browser after this
    id: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class ActiveSession:
    id: str
    csrf_token: str
    user: User
    created_at: datetime
    expires_at: datetime


async def create(db: Database, user_id: str, policy: SessionPolicy) -> NewSession:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = ConsoleSession(
        id=uuid.uuid4().hex,
        token_hash=hash_token(token),
        user_id=user_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen=now,
        expires_at=_expiry(now, now, policy),
    )
    async with db.write() as s:
        s.add(row)
    return NewSession(token, row.id, row.csrf_token, row.expires_at)


def _expiry(created: datetime, now: datetime, policy: SessionPolicy) -> datetime:
    return min(now + timedelta(hours=policy.idle_hours), created + timedelta(days=policy.max_days))


async def lookup(db: Database, token: str | None, policy: SessionPolicy) -> ActiveSession | None:
    """The live session of `token` with its (enabled) user, sliding its expiry; None when
    there is none, it expired (the row is deleted) or the account was disabled."""
    if not token:
        return None
    async with db.read() as s:
        row = (
            await s.execute(
                select(ConsoleSession, User)
                .join(User, User.id == ConsoleSession.user_id)
                .where(ConsoleSession.token_hash == hash_token(token))
            )
        ).first()
    if row is None:
        return None
    session, user = row
    now = utcnow()
    if session.expires_at <= now or not user.enabled:
        await revoke(db, session.id)
        return None
    expires = session.expires_at
    if now - session.last_seen >= TOUCH_EVERY:
        expires = _expiry(session.created_at, now, policy)
        async with db.write() as s:
            await s.execute(
                update(ConsoleSession)
                .where(ConsoleSession.id == session.id)
                .values(last_seen=now, expires_at=expires)
            )
    return ActiveSession(session.id, session.csrf_token, user, session.created_at, expires)


async def revoke(db: Database, session_id: str) -> None:
    async with db.write() as s:
        await s.execute(delete(ConsoleSession).where(ConsoleSession.id == session_id))


async def revoke_all(db: Database, user_id: str, keep: str | None = None) -> int:
    """Delete every session of the user (but `keep`'s); returns how many."""
    stmt = delete(ConsoleSession).where(ConsoleSession.user_id == user_id)
    if keep is not None:
        stmt = stmt.where(ConsoleSession.id != keep)
    async with db.write() as s:
        return (await s.execute(stmt)).rowcount or 0


async def count(db: Database, user_id: str) -> int:
    async with db.read() as s:
        rows = await s.scalars(select(ConsoleSession.id).where(ConsoleSession.user_id == user_id))
        return len(rows.all())
