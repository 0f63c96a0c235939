"""API keys: random secrets shown once, stored only as SHA-256 hashes.

Keys carry 240 bits of randomness, so a fast hash is safe (no password stretching needed);
lookup is by hash through an index and the final comparison is constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select, update

from pixgate.db import ApiKey, Database, utcnow
from pixgate.errors import PixgateError

PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,23}$")
DEFAULT_PREFIX = "sk-"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def display_form(raw: str, prefix: str) -> str:
    body = raw[len(prefix) :]
    return f"{prefix}{body[:4]}…{body[-4:]}"


@dataclass(frozen=True)
class CreatedKey:
    id: str
    key: str  # the only time the raw key exists outside the client
    display: str
    name: str | None
    image_cap: int | None


async def create_key(
    db: Database,
    name: str | None = None,
    image_cap: int | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> CreatedKey:
    if not PREFIX_RE.match(prefix):
        raise ValueError("prefix must start with a letter and use 1-24 letters, digits, '-' or '_'")
    if image_cap is not None and image_cap < 0:
        raise ValueError("image cap must be 0 or more")
    raw = prefix + secrets.token_urlsafe(30)
    row = ApiKey(
        id=uuid.uuid4().hex[:16],
        name=name,
        prefix=prefix,
        key_hash=hash_key(raw),
        display=display_form(raw, prefix),
        image_cap=image_cap,
        images_used=0,
        images_reserved=0,
        enabled=True,
        created_at=utcnow(),
    )
    async with db.write() as s:
        s.add(row)
    return CreatedKey(row.id, raw, row.display, name, image_cap)


async def list_keys(db: Database) -> list[ApiKey]:
    async with db.read() as s:
        return list((await s.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())


async def revoke_key(db: Database, key_or_id: str) -> ApiKey | None:
    """Disable a key given the raw key, its id or its display form. None if no match."""
    async with db.write() as s:
        row = await s.scalar(
            select(ApiKey).where(
                or_(
                    ApiKey.key_hash == hash_key(key_or_id),
                    ApiKey.id == key_or_id,
                    ApiKey.display == key_or_id,
                )
            )
        )
        if row is None:
            return None
        await s.execute(
            update(ApiKey).where(ApiKey.id == row.id).values(enabled=False, revoked_at=utcnow())
        )
        row.enabled = False
        return row


async def authenticate(db: Database, raw: str | None) -> ApiKey:
    """The enabled key for `raw`, or a 401/403 PixgateError."""
    if not raw:
        raise PixgateError("missing_api_key")
    digest = hash_key(raw)
    async with db.read() as s:
        row = await s.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise PixgateError("invalid_api_key")
    if not row.enabled:
        raise PixgateError("key_disabled")
    return row
