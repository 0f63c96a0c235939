"""The one place where usage moves. Called only inside the transactions of admission
(reserve) and of settle/fail (charge the successful images, release the rest).

This issue's unit is the key's image cap; the credit ledger builds on the same two calls.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pixgate.db import ApiKey
from pixgate.errors import PixgateError


async def reserve(session: AsyncSession, key_id: str, n: int) -> None:
    """Reserve `n` images of the key's cap atomically, or raise 429 image_cap_reached.

    The condition lives in the UPDATE itself, so concurrent admissions can never reserve
    past the cap, whatever the database's isolation level.
    """
    result = await session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            ApiKey.enabled.is_(True),
            (ApiKey.image_cap.is_(None))
            | (ApiKey.images_used + ApiKey.images_reserved + n <= ApiKey.image_cap),
        )
        .values(images_reserved=ApiKey.images_reserved + n)
    )
    if result.rowcount == 1:
        return
    row = await session.scalar(select(ApiKey).where(ApiKey.id == key_id))
    if row is None or not row.enabled:
        raise PixgateError("key_disabled")
    raise PixgateError(
        "image_cap_reached",
        args_={"used": row.images_used + row.images_reserved, "cap": row.image_cap, "requested": n},
    )


async def settle(session: AsyncSession, key_id: str | None, reserved: int, succeeded: int) -> None:
    """Charge `succeeded` images and release the whole reservation."""
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
