"""Top-ups from the operator's payment system. Each carries the payment's Idempotency-Key,
stored (unique) on its ledger entry, so a retried notification credits once: the retry
gets the first top-up back, marked `replayed`, and a different request under a used key
is a 409. A top-up moves the user from the default plan to the paid plan (seed 003)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from pixgate.accounts import billing, users
from pixgate.db import Database, LedgerEntry, User
from pixgate.errors import PixgateError, invalid
from pixgate.money import MAX_AMOUNT, MAX_AMOUNT_MINOR, from_minor

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class TopUp:
    entry_id: int  # the top-up's ledger entry
    user: User  # as it is now: its balance and plan
    amount_minor: int
    replayed: bool  # True: an earlier top-up under this key, nothing credited now


def check_key(key: str | None) -> str:
    """The Idempotency-Key, or a 400 naming the header."""
    if key is None or not 1 <= len(key) <= MAX_KEY_LENGTH or not key.strip():
        raise invalid(
            HEADER,
            f"the header is required: 1-{MAX_KEY_LENGTH} characters naming the payment",
            f"必须提供该请求头:1-{MAX_KEY_LENGTH} 个字符,标识这笔付款",
        )
    return key


def check_top_up_amount(amount_minor: int) -> int:
    if not 0 < amount_minor <= MAX_AMOUNT_MINOR:
        got = from_minor(amount_minor)
        raise invalid(
            "amount",
            f"must be an amount greater than 0 and at most {MAX_AMOUNT} (got {got})",
            f"金额必须大于 0 且不超过 {MAX_AMOUNT}(收到 {got})",
        )
    return amount_minor


async def top_up(
    db: Database,
    user: str,
    amount_minor: int,
    idempotency_key: str,
    reason: str,
    *,
    actor: str | None = None,
    move: users.PlanMove | None = None,
) -> TopUp:
    """Credit `amount_minor` to `user` (name or id) once per `idempotency_key`, in one
    transaction with the plan move."""
    key = check_key(idempotency_key)
    check_top_up_amount(amount_minor)
    if not reason.strip():
        raise invalid("reason", "must not be empty", "不能为空")
    owner = await users.get_user(db, user)
    earlier = await _replay(db, owner, amount_minor, key)
    if earlier is not None:
        return earlier
    try:
        async with db.write() as s:
            balance = await billing.post(
                s, owner.id, amount_minor, "topup", reason=reason, actor=actor, idempotency_key=key
            )
            if balance is None:  # raising rolls the whole transaction back
                raise billing.balance_ceiling("amount")
            await users.move_to_paid(s, owner.id, move)
            entry_id = await s.scalar(
                select(LedgerEntry.id).where(LedgerEntry.idempotency_key == key)
            )
    except IntegrityError:  # a concurrent request under the same key committed first
        earlier = await _replay(db, owner, amount_minor, key)
        if earlier is None:
            raise
        return earlier
    return TopUp(entry_id, await users.get_user(db, owner.id), amount_minor, replayed=False)


async def _replay(db: Database, owner: User, amount_minor: int, key: str) -> TopUp | None:
    """The top-up already made under `key`, if any; a 409 if it was a different one."""
    async with db.read() as s:
        entry = await s.scalar(select(LedgerEntry).where(LedgerEntry.idempotency_key == key))
        holder = entry and await s.scalar(select(User.name).where(User.id == entry.user_id))
    if entry is None:
        return None
    if entry.user_id != owner.id or entry.amount_minor != amount_minor:
        raise PixgateError(
            "idempotency_conflict",
            param=HEADER,
            args_={"key": key, "amount": str(from_minor(entry.amount_minor)), "user": holder},
        )
    return TopUp(entry.id, await users.get_user(db, owner.id), entry.amount_minor, replayed=True)
