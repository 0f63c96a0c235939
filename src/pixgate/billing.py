"""The one place where money and usage move. Every function runs inside a caller's write
transaction, so a balance change and its ledger row commit together or not at all.

Per job the ledger reads: `reserve` (-n x price) at admission; at settle `refund` (+n x price,
the reservation returns whole) and `charge` (-produced x price). A failed image therefore
costs nothing, and for a finished job reserve + refund == 0 and -charge == its cost.
"""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pixgate.db import ApiKey, LedgerEntry, User
from pixgate.errors import PixgateError
from pixgate.money import from_minor

KINDS = ("grant", "topup", "redemption", "reserve", "refund", "charge", "adjust")


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
) -> int | None:
    """Move `amount_minor` (signed) on the user's balance and append its ledger row.

    Returns the new balance, or None when `require_funds` and the balance is too small
    (nothing is changed then). The funds check is part of the UPDATE, so concurrent debits
    can never take a balance below zero.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind {kind}")
    stmt = update(User).where(User.id == user_id)
    if require_funds and amount_minor < 0:
        stmt = stmt.where(User.balance_minor >= -amount_minor)
    balance = await session.scalar(
        stmt.values(balance_minor=User.balance_minor + amount_minor).returning(User.balance_minor)
    )
    if balance is None:
        return None
    await session.execute(
        insert(LedgerEntry).values(
            user_id=user_id,
            kind=kind,
            amount_minor=amount_minor,
            balance_after=balance,
            job_id=job_id,
            key_id=key_id,
            reason=reason,
            actor=actor,
        )
    )
    return balance


async def reserve(
    session: AsyncSession,
    key: ApiKey,
    n: int,
    price_minor: int,
    job_id: str,
    currency: str = "CNY",
) -> None:
    """Reserve `n` images of the key's cap and `n x price` of the account's credit, or raise
    429 saying which ran out. Both conditions live in the UPDATEs themselves."""
    result = await session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key.id,
            ApiKey.enabled.is_(True),
            (ApiKey.image_cap.is_(None))
            | (ApiKey.images_used + ApiKey.images_reserved + n <= ApiKey.image_cap),
        )
        .values(images_reserved=ApiKey.images_reserved + n)
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
    cost = n * price_minor
    if cost == 0:
        return
    balance = await post(
        session,
        key.user_id,
        -cost,
        "reserve",
        job_id=job_id,
        key_id=key.id,
        require_funds=True,
    )
    if balance is None:
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
) -> None:
    """Charge `succeeded` images and return the whole reservation, in the caller's
    transaction (the one that marks the job finished)."""
    if key_id is None:
        return
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(
            images_used=ApiKey.images_used + succeeded,
            images_reserved=ApiKey.images_reserved - reserved,
        )
    )
    if user_id is None or price_minor == 0:
        return
    await post(session, user_id, reserved * price_minor, "refund", job_id=job_id, key_id=key_id)
    if succeeded:
        await post(
            session, user_id, -succeeded * price_minor, "charge", job_id=job_id, key_id=key_id
        )
