"""API keys: random secrets shown once, stored only as SHA-256 hashes.

Keys carry 240 bits of randomness, so a fast hash is safe (no password stretching needed);
lookup is by hash through an index and the final comparison is constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update

from pixgate.accounts.secrets import SecretBox
from pixgate.db import ApiKey, Database, User, utcnow
from pixgate.errors import PixgateError, invalid

PREFIX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,23}$")
DEFAULT_PREFIX = "sk-"
# The largest image cap: fits the 32-bit column on every database with room for counting.
MAX_IMAGE_CAP = 10**9


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def display_form(raw: str, prefix: str) -> str:
    body = raw[len(prefix) :]
    return f"{prefix}{body[:4]}…{body[-4:]}"


def parse_networks(items: list[str]) -> list[str]:
    """Validate addresses/CIDRs ('10.0.0.0/8', '2001:db8::1'); returns normalized strings."""
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or CIDR range") from exc
    return out


def ip_allowed(ip: str | None, allowed: list[str] | None) -> bool:
    if not allowed:
        return True
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in allowed)


@dataclass(frozen=True)
class KeySpec:
    """What a new key may do. Empty lists mean no restriction."""

    name: str | None = None
    image_cap: int | None = None
    prefix: str = DEFAULT_PREFIX
    expires_at: datetime | None = None
    allowed_models: list[str] | None = None
    allowed_ips: list[str] | None = None
    with_secret: bool = False
    explicit_label: bool | None = None  # None: the deployment's explicit_label setting


@dataclass(frozen=True)
class CreatedKey:
    id: str
    key: str  # the only time the raw key exists outside the client
    display: str
    name: str | None
    image_cap: int | None
    user_id: str
    secret: str | None = None  # the signing secret, shown once like the key


@dataclass(frozen=True)
class Caller:
    """An authenticated request's key and account."""

    key: ApiKey
    user: User


async def create_key(
    db: Database, user_id: str, spec: KeySpec, box: SecretBox | None = None
) -> CreatedKey:
    if not PREFIX_RE.match(spec.prefix):
        raise ValueError("prefix must start with a letter and use 1-24 letters, digits, '-' or '_'")
    if spec.image_cap is not None and not 0 <= spec.image_cap <= MAX_IMAGE_CAP:
        raise invalid(
            "images",
            f"the image cap must be between 0 and {MAX_IMAGE_CAP} (got {spec.image_cap})",
            f"图片数量上限必须在 0 到 {MAX_IMAGE_CAP} 之间(收到 {spec.image_cap})",
        )
    allowed_ips = parse_networks(spec.allowed_ips) if spec.allowed_ips else None
    secret = secrets.token_urlsafe(32) if spec.with_secret else None
    if secret is not None and box is None:
        raise ValueError("a signing secret needs the server master key")
    raw = spec.prefix + secrets.token_urlsafe(30)
    row = ApiKey(
        id=uuid.uuid4().hex[:16],
        user_id=user_id,
        name=spec.name,
        prefix=spec.prefix,
        key_hash=hash_key(raw),
        display=display_form(raw, spec.prefix),
        image_cap=spec.image_cap,
        images_used=0,
        images_reserved=0,
        enabled=True,
        created_at=utcnow(),
        expires_at=spec.expires_at,
        allowed_models=spec.allowed_models or None,
        allowed_ips=allowed_ips,
        secret_enc=box.encrypt(secret) if secret is not None and box else None,
        explicit_label=spec.explicit_label,
    )
    async with db.write() as s:
        s.add(row)
    return CreatedKey(row.id, raw, row.display, spec.name, spec.image_cap, user_id, secret)


async def list_keys(db: Database, user_id: str | None = None) -> list[ApiKey]:
    stmt = select(ApiKey).order_by(ApiKey.created_at)
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    async with db.read() as s:
        return list((await s.scalars(stmt)).all())


async def find_key(db: Database, key_or_id: str) -> ApiKey:
    """A key by its raw value, id or display form, or 404."""
    async with db.read() as s:
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
        raise PixgateError("key_not_found", args_={"key": key_or_id})
    return row


async def set_enabled(db: Database, key_or_id: str, enabled: bool) -> ApiKey:
    """Disable (revoke) or re-enable a key."""
    return await _update(db, key_or_id, enabled=enabled, revoked_at=None if enabled else utcnow())


async def set_explicit_label(db: Database, key_or_id: str, value: bool | None) -> ApiKey:
    """Override the deployment's explicit (visible) label for one key; None: follow it."""
    return await _update(db, key_or_id, explicit_label=value)


async def _update(db: Database, key_or_id: str, **values: object) -> ApiKey:
    row = await find_key(db, key_or_id)
    async with db.write() as s:
        await s.execute(update(ApiKey).where(ApiKey.id == row.id).values(**values))
    return await find_key(db, row.id)


async def revoke_key(db: Database, key_or_id: str) -> ApiKey | None:
    try:
        return await set_enabled(db, key_or_id, False)
    except PixgateError:
        return None


async def authenticate(db: Database, raw: str | None, ip: str | None = None) -> Caller:
    """The key and account for `raw`, or a 401/403 PixgateError saying why not."""
    if not raw:
        raise PixgateError("missing_api_key")
    digest = hash_key(raw)
    found = await _caller(db, ApiKey.key_hash == digest)
    if found is None or not hmac.compare_digest(found.key.key_hash, digest):
        raise PixgateError("invalid_api_key")
    return _admit(found, ip)


async def authenticate_key_id(db: Database, key_id: str | None, ip: str | None = None) -> Caller:
    """Like `authenticate` (enabled, expiry, IP and account checks), for a key named by its
    id: the access key of signed requests, whose secret is the key's signing secret, never
    the raw key."""
    if not key_id:
        raise PixgateError("missing_api_key")
    found = await _caller(db, ApiKey.id == key_id)
    if found is None:
        raise PixgateError("invalid_api_key")
    return _admit(found, ip)


def _admit(found: Caller, ip: str | None) -> Caller:
    """Refuse a disabled, expired or IP-restricted key, or a disabled account."""
    key, user = found.key, found.user
    if not key.enabled:
        raise PixgateError("key_disabled")
    if key.expires_at is not None and key.expires_at <= utcnow():
        raise PixgateError(
            "key_expired", args_={"expires": key.expires_at.isoformat(" ", "seconds")}
        )
    if not user.enabled:
        raise PixgateError("account_disabled")
    if not ip_allowed(ip, key.allowed_ips):
        raise PixgateError("ip_not_allowed", args_={"ip": ip or "unknown"})
    return found


async def key_by_id_unchecked(db: Database, key_id: str) -> Caller:
    """The current rows of a key and its account, with NO checks (disabled, expired and
    IP-restricted keys are returned too): only for figures about a key that was already
    authenticated for this request, e.g. the usage reported after its job. Never use it
    to let a request in; `authenticate_key_id` is that."""
    found = await _caller(db, ApiKey.id == key_id)
    if found is None:
        raise PixgateError("key_not_found", args_={"key": key_id})
    return found


async def _caller(db: Database, condition) -> Caller | None:
    """The key matching `condition` with its account, in one query."""
    async with db.read() as s:
        row = (
            await s.execute(
                select(ApiKey, User).join(User, User.id == ApiKey.user_id).where(condition)
            )
        ).first()
    return Caller(*row) if row is not None else None
