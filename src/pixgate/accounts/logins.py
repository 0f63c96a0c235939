"""Console logins: finding an account by user name or email, and setting its password.
Accounts themselves are made by `users.create_user` (the same for API, CLI and console)."""

from __future__ import annotations

from sqlalchemy import func, or_, select, update

from pixgate.db import Database, User


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def find_by_login(db: Database, login: str) -> User | None:
    """The user whose name is `login`, or whose email it is (case-insensitive)."""
    login = login.strip()
    if not login:
        return None
    async with db.read() as s:
        return await s.scalar(
            select(User).where(or_(User.name == login, User.email == normalize_email(login)))
        )


async def email_taken(db: Database, email: str) -> bool:
    async with db.read() as s:
        found = await s.scalar(
            select(func.count()).select_from(User).where(User.email == normalize_email(email))
        )
    return bool(found)


async def set_password_hash(db: Database, user_id: str, password_hash: str) -> None:
    async with db.write() as s:
        await s.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
