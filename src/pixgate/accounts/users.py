"""Users (accounts) and credit: creation with the free grant, plans and roles, and
admin credit operations. Every balance change goes through `billing.post`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pixgate.accounts import billing
from pixgate.db import Database, LedgerEntry, User, utcnow
from pixgate.errors import PixgateError
from pixgate.money import check_amount

ROLES = ("user", "admin")
CREDIT_KINDS = ("grant", "topup", "adjust")


@dataclass(frozen=True)
class PlanMove:
    """seed 003: a user who pays (a top-up, a redemption) leaves the default plan, whose
    limits are the free tier's, for the operator's paid plan."""

    default: str
    paid: str


async def move_to_paid(session: AsyncSession, user_id: str, move: PlanMove | None) -> None:
    """In the caller's transaction: the user's plan becomes `move.paid` if it is
    `move.default` (a plan an admin chose stays)."""
    if move is None or move.default == move.paid:
        return
    await session.execute(
        update(User).where(User.id == user_id, User.plan == move.default).values(plan=move.paid)
    )


@dataclass(frozen=True)
class NewUser:
    name: str
    role: str = "user"
    plan: str = "free"
    grant_minor: int = 0
    email: str | None = None  # the console's login (lower-case), unique
    password_hash: str | None = None  # accounts.passwords.hash_password; None: API-only


async def create_user(db: Database, new: NewUser, actor: str | None = None) -> User:
    if new.role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if new.grant_minor < 0:
        raise ValueError("a grant must not be negative")
    user = User(
        id=uuid.uuid4().hex[:16],
        name=new.name,
        role=new.role,
        plan=new.plan,
        balance_minor=0,
        enabled=True,
        created_at=utcnow(),
        email=new.email,
        password_hash=new.password_hash,
    )
    try:
        async with db.write() as s:
            s.add(user)
            await s.flush()
            if new.grant_minor:
                await billing.post(
                    s,
                    user.id,
                    new.grant_minor,
                    "grant",
                    reason="new user free grant",
                    actor=actor or "system",
                )
    except IntegrityError as exc:
        raise PixgateError("user_exists", args_={"name": new.name}) from exc
    return await get_user(db, user.id)


async def get_user(db: Database, name_or_id: str) -> User:
    async with db.read() as s:
        user = await s.scalar(
            select(User).where(or_(User.id == name_or_id, User.name == name_or_id))
        )
    if user is None:
        raise PixgateError("user_not_found", args_={"user": name_or_id})
    return user


async def user_filter(db: Database, name_or_id: str | None) -> str | None:
    """A listing's optional user filter: the user's id (404 if unknown), or None for all."""
    return (await get_user(db, name_or_id)).id if name_or_id else None


async def list_users(db: Database) -> list[User]:
    async with db.read() as s:
        return list((await s.scalars(select(User).order_by(User.created_at))).all())


async def update_user(
    db: Database,
    name_or_id: str,
    *,
    plan: str | None = None,
    role: str | None = None,
    enabled: bool | None = None,
) -> User:
    user = await get_user(db, name_or_id)
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    values = {
        k: v for k, v in {"plan": plan, "role": role, "enabled": enabled}.items() if v is not None
    }
    if values:
        async with db.write() as s:
            await s.execute(update(User).where(User.id == user.id).values(**values))
    return await get_user(db, user.id)


async def credit(
    db: Database,
    name_or_id: str,
    amount_minor: int,
    kind: str,
    reason: str,
    actor: str,
    move: PlanMove | None = None,
) -> int:
    """Grant, top up or adjust (may be negative, never below zero). Returns the balance.
    A top-up moves the user to the paid plan (`move`)."""
    if kind not in CREDIT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(CREDIT_KINDS)}")
    check_amount(amount_minor, "amount", negative=kind == "adjust")
    if kind != "adjust" and amount_minor <= 0:
        raise ValueError(f"a {kind} must be positive; use 'adjust' to take credit away")
    if not reason.strip():
        raise ValueError("a reason is required")
    user = await get_user(db, name_or_id)
    async with db.write() as s:
        balance = await billing.post(
            s, user.id, amount_minor, kind, reason=reason, actor=actor, require_funds=True
        )
        if balance is not None and kind == "topup":
            await move_to_paid(s, user.id, move)
    if balance is None and amount_minor > 0:
        raise billing.balance_ceiling("amount")
    if balance is None:
        raise ValueError("the adjustment would take the balance below zero")
    return balance


async def ledger(db: Database, user_id: str | None = None, limit: int = 100) -> list[LedgerEntry]:
    stmt = select(LedgerEntry).order_by(LedgerEntry.id.desc()).limit(limit)
    if user_id is not None:
        stmt = stmt.where(LedgerEntry.user_id == user_id)
    async with db.read() as s:
        return list((await s.scalars(stmt)).all())
