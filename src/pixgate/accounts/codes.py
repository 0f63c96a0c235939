"""Redemption codes: admins mint batches of single-use codes of a value; users redeem
them for credit. A code is a bearer secret, so only its hash is stored."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid

from sqlalchemy import insert, update

from pixgate.accounts import billing, users
from pixgate.db import Database, RedemptionCode, utcnow
from pixgate.errors import PixgateError
from pixgate.money import check_amount

MAX_BATCH = 10_000


def _new_code() -> str:
    body = base64.b32encode(secrets.token_bytes(10)).decode()  # 80 bits, 16 chars
    return "PG-" + "-".join(body[i : i + 4] for i in range(0, 16, 4))


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


async def mint(db: Database, count: int, value_minor: int, actor: str) -> tuple[str, list[str]]:
    """Create `count` codes worth `value_minor` each. Returns (batch id, raw codes)."""
    if not 1 <= count <= MAX_BATCH:
        raise ValueError(f"count must be between 1 and {MAX_BATCH}")
    check_amount(value_minor, "value")
    if value_minor <= 0:
        raise ValueError("a code's value must be positive")
    batch = uuid.uuid4().hex[:12]
    codes = [_new_code() for _ in range(count)]
    now = utcnow()
    async with db.write() as s:
        await s.execute(
            insert(RedemptionCode),
            [
                {
                    "id": uuid.uuid4().hex,
                    "code_hash": _hash(c),
                    "display": c[:8] + "…",
                    "batch": batch,
                    "value_minor": value_minor,
                    "created_at": now,
                    "created_by": actor,
                }
                for c in codes
            ],
        )
    return batch, codes


async def redeem(
    db: Database, user_id: str, code: str, move: users.PlanMove | None = None
) -> tuple[int, int]:
    """Credit the code's value to the user once, moving them to the paid plan (`move`).
    Returns (value, new balance).

    The code is claimed by a conditional UPDATE in the same transaction as the credit, so
    two concurrent redemptions credit once and the other gets 409.
    """
    async with db.write() as s:
        claimed = await s.execute(
            update(RedemptionCode)
            .where(RedemptionCode.code_hash == _hash(code), RedemptionCode.redeemed_by.is_(None))
            .values(redeemed_by=user_id, redeemed_at=utcnow())
            .returning(RedemptionCode.value_minor, RedemptionCode.id)
        )
        row = claimed.first()
        if row is None:
            exists = await s.scalar(
                RedemptionCode.__table__.select()
                .with_only_columns(RedemptionCode.id)
                .where(RedemptionCode.code_hash == _hash(code))
            )
            raise PixgateError("code_redeemed" if exists else "code_invalid", param="code")
        value, code_id = row
        balance = await billing.post(
            s, user_id, value, "redemption", reason=f"code {code_id}", actor=user_id
        )
        if balance is None:  # raising rolls the claim back: the code stays unused
            raise billing.balance_ceiling("code")
        await users.move_to_paid(s, user_id, move)
    return value, balance
