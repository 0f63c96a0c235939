"""The one place where money and usage move. Every function runs inside a caller's write
transaction, so a balance change and its ledger row commit together or not at all.

Per job the ledger reads: `reserve` (-n x price) at admission; at settle `refund` (+n x price,
the reservation returns whole) and `charge` (-produced x price). A failed image therefore
costs nothing, and for a finished job reserve + refund == 0 and -charge == its cost.
"""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pixgate.db import ApiKey, LedgerEntry, User, utcnow
from pixgate.errors import PixgateError, invalid
from pixgate.money import MAX_BALANCE_MINOR, from_minor

KINDS = ("grant", "topup", "redemption", "reserve", "refund", "charge", "adjust")
# Credit from outside the job cycle; these may not lift a balance past MAX_BALANCE_MINOR
# (refunds may: they only return what a reservation took).
CREDITS = ("grant", "topup", "redemption", "adjust")

# Core tables, not ORM entities: these statements run on every request, and the ORM's
# bulk-update bookkeeping would only add cost here.
_users = User.__table__
_keys = ApiKey.__table__
_ledger = LedgerEntry.__table__


async def post(
    session: AsyncSession,
    user_id: str,
    amount_minor: int,
    kind: str,
    *,
    job_id: str | None = None,
    key_id: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    require_funds: bool = False,
    idempotency_key: str | None = None,
) -> int | None:
    """Move `amount_minor` (signed) on the user's balance and append its ledger row.

    Returns the new balance, or None when `require_funds` and the balance is too small, or
    when a credit would lift it past MAX_BALANCE_MINOR (nothing is changed then). Both
    checks are part of the UPDATE, so concurrent changes can never get around them.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind}")
    ceiling = kind in CREDITS and amount_minor > 0
    balance = await _move(session, user_id, amount_minor, require_funds, ceiling)
    if balance is None:
        return None
    conn = await session.connection()
    row = _entry(user_id, kind, amount_minor, job_id, key_id, reason, actor)
    if idempotency_key is not None:  # unique: a second entry with it fails the transaction
        row["idempotency_key"] = idempotency_key
    await conn.execute(insert(_ledger), row)
    return balance


def balance_ceiling(field: str) -> PixgateError:
    """A credit refused because it would lift the balance past MAX_BALANCE_MINOR."""
    most = from_minor(MAX_BALANCE_MINOR)
    return invalid(
        field,
        f"would lift the balance above the largest balance allowed, {most}",
        f"会使余额超过允许的最大余额 {most}",
    )


async def _move(
    session: AsyncSession,
    user_id: str,
    amount: int,
    require_funds: bool = False,
    ceiling: bool = False,
) -> int | None:
    """Add `amount` to the balance; with `require_funds`, only if it stays >= 0; with
    `ceiling`, only if it stays <= MAX_BALANCE_MINOR."""
    stmt = update(_users).where(_users.c.id == user_id)
    if require_funds and amount < 0:
        stmt = stmt.where(_users.c.balance_minor >= -amount)
    if ceiling:
        stmt = stmt.where(_users.c.balance_minor <= MAX_BALANCE_MINOR - amount)
    conn = await session.connection()
    return await conn.scalar(
        stmt.values(balance_minor=_users.c.balance_minor + amount).returning(_users.c.balance_minor)
    )


def _entry(
    user_id: str,
    kind: str,
    amount: int,
    job_id: str | None = None,
    key_id: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> dict:
    return {
        "user_id": user_id,
        "kind": kind,
        "amount_minor": amount,
        "job_id": job_id,
        "key_id": key_id,
        "reason": reason,
        "actor": actor,
        "created_at": utcnow(),
    }


async def reserve(
    session: AsyncSession,
    key: ApiKey,
    n: int,
    price_minor: int,
    job_id: str,
    currency: str = "CNY",
) -> bool:
    """Reserve `n` images of the key's cap and `n x price` of the account's credit, or raise
    429 saying which ran out. Both conditions live in the UPDATEs themselves.

    Returns whether cap images were reserved: a key without a cap (at admission) needs no
    cap bookkeeping, which saves a statement on the hot path.
    """
    conn = await session.connection()
    if key.image_cap is not None:
        await _reserve_cap(session, conn, key, n)
    await _reserve_credit(session, conn, key, n, price_minor, job_id, currency)
    return key.image_cap is not None


async def _reserve_cap(session: AsyncSession, conn, key: ApiKey, n: int) -> None:
    k = _keys.c
    result = await conn.execute(
        update(_keys)
        .where(
            k.id == key.id,
            k.enabled.is_(True),
            (k.image_cap.is_(None)) | (k.images_used + k.images_reserved + n <= k.image_cap),
        )
        .values(images_reserved=k.images_reserved + n)
    )
    if result.rowcount != 1:
        row = await session.scalar(select(ApiKey).where(ApiKey.id == key.id))
        if row is None or not row.enabled:
            raise PixgateError("key_disabled")
        raise PixgateError(
            "image_cap_reached",
            args_={
                "used": row.images_used + row.images_reserved,
                "cap": row.image_cap,
                "requested": n,
            },
        )


async def _reserve_credit(
    session: AsyncSession,
    conn,
    key: ApiKey,
    n: int,
    price_minor: int,
    job_id: str,
    currency: str,
) -> None:
    cost = n * price_minor
    if cost == 0:
        return
    u = _users.c
    taken = await conn.execute(
        update(_users)
        .where(u.id == key.user_id, u.balance_minor >= cost)
        .values(balance_minor=u.balance_minor - cost)
    )
    if taken.rowcount == 1:
        await conn.execute(insert(_ledger), _entry(key.user_id, "reserve", -cost, job_id, key.id))
        return
    current = await session.scalar(select(User.balance_minor).where(User.id == key.user_id))
    raise PixgateError(
        "insufficient_credit",
        args_={
            "requested": n,
            "price": from_minor(price_minor),
            "cost": from_minor(cost),
            "balance": from_minor(current or 0),
            "currency": currency,
        },
    )


async def settle(
    session: AsyncSession,
    *,
    key_id: str | None,
    user_id: str | None,
    job_id: str,
    reserved: int,
    succeeded: int,
    price_minor: int,
    cap_reserved: bool = True,
) -> None:
    """Charge `succeeded` images and return the whole reservation, in the caller's
    transaction (the one that marks the job finished)."""
    if key_id is None:
        return
    k = _keys.c
    conn = await session.connection()
    await conn.execute(
        update(_keys)
        .where(k.id == key_id)
        .values(
            images_used=k.images_used + succeeded,
            images_reserved=k.images_reserved - (reserved if cap_reserved else 0),
        )
    )
    if user_id is None or price_minor == 0:
        return
    # One balance update for the net amount (none when every image succeeded), then both
    # ledger rows in one insert.
    refund, charge = reserved * price_minor, succeeded * price_minor
    if refund != charge:
        await conn.execute(
            update(_users)
            .where(_users.c.id == user_id)
            .values(balance_minor=_users.c.balance_minor + (refund - charge))
        )
    rows = [_entry(user_id, "refund", refund, job_id, key_id)]
    if charge:
        rows.append(_entry(user_id, "charge", -charge, job_id, key_id))
    await conn.execute(insert(_ledger), rows if len(rows) > 1 else rows[0])
