"""Consistency checks over the money: run by `pixgate audit`, and by tests after every
concurrency run. Any finding means something moved money outside `billing`.

Each invariant is one aggregate query that returns only the rows breaking it, so the audit
takes the same memory for a thousand jobs as for ten million: the database does the
summing, Python only words the findings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from pixgate.db import ApiKey, Database, Job, LedgerEntry, User

_FINISHED = Job.status.in_(("succeeded", "failed"))


def _ledger_by_user() -> Any:
    return (
        select(LedgerEntry.user_id, func.sum(LedgerEntry.amount_minor).label("total"))
        .group_by(LedgerEntry.user_id)
        .subquery()
    )


def _ledger_by_job() -> Any:
    """Per job: its charges, and its reservation minus what was returned."""

    def kind_sum(*kinds: str) -> Any:
        amount = case((LedgerEntry.kind.in_(kinds), LedgerEntry.amount_minor), else_=0)
        return func.coalesce(func.sum(amount), 0)

    return (
        select(
            LedgerEntry.job_id,
            kind_sum("charge").label("charge"),
            kind_sum("refund").label("refund"),
            kind_sum("reserve", "refund").label("held"),
        )
        .where(LedgerEntry.job_id.is_not(None))
        .group_by(LedgerEntry.job_id)
        .subquery()
    )


def _balances_off_ledger() -> Select:
    sums = _ledger_by_user()
    total = func.coalesce(sums.c.total, 0)
    return (
        select(User.name, User.balance_minor, total)
        .outerjoin(sums, sums.c.user_id == User.id)
        .where(User.balance_minor != total)
        .order_by(User.name)
    )


def _negative_balances() -> Select:
    return select(User.name, User.balance_minor).where(User.balance_minor < 0).order_by(User.name)


def _costs_off_price() -> Select:
    return (
        select(Job.id, Job.cost_minor, Job.n_succeeded, Job.price_minor)
        .where(_FINISHED, Job.cost_minor != Job.n_succeeded * Job.price_minor)
        .order_by(Job.id)
    )


def _charges_off_cost() -> Select:
    by_job = _ledger_by_job()
    charged = -func.coalesce(by_job.c.charge, 0)
    return (
        select(Job.id, charged, Job.cost_minor)
        .outerjoin(by_job, by_job.c.job_id == Job.id)
        .where(_FINISHED, Job.user_id.is_not(None), charged != Job.cost_minor)
        .order_by(Job.id)
    )


def _reservations_kept() -> Select:
    by_job = _ledger_by_job()
    return (
        select(Job.id, by_job.c.held)
        .join(by_job, by_job.c.job_id == Job.id)
        .where(_FINISHED, by_job.c.held != 0)
        .order_by(Job.id)
    )


def _charged_while_unfinished() -> Select:
    by_job = _ledger_by_job()
    return (
        select(Job.id, Job.status)
        .join(by_job, by_job.c.job_id == Job.id)
        .where(~_FINISHED, or_(by_job.c.charge != 0, by_job.c.refund != 0))
        .order_by(Job.id)
    )


def _key_counters() -> Select:
    """Keys whose used/reserved counters disagree with their jobs, or used over cap."""
    produced = func.coalesce(func.sum(Job.n_succeeded), 0)
    reserving = and_(~_FINISHED, Job.cap_reserved.is_(True))
    reserved = func.coalesce(func.sum(case((reserving, Job.n), else_=0)), 0)
    counts = (
        select(Job.key_id, produced.label("used"), reserved.label("reserved"))
        .where(Job.key_id.is_not(None))
        .group_by(Job.key_id)
        .subquery()
    )
    used = func.coalesce(counts.c.used, 0)
    held = func.coalesce(counts.c.reserved, 0)
    over_cap = and_(ApiKey.image_cap.is_not(None), ApiKey.images_used > ApiKey.image_cap)
    return (
        select(
            ApiKey.display, ApiKey.images_used, used, ApiKey.images_reserved, held, ApiKey.image_cap
        )
        .outerjoin(counts, counts.c.key_id == ApiKey.id)
        .where(or_(ApiKey.images_used != used, ApiKey.images_reserved != held, over_cap))
        .order_by(ApiKey.display)
    )


def _key_findings(row: Any) -> list[str]:
    display, images_used, used, images_reserved, held, cap = row
    found = []
    if images_used != used:
        found.append(f"key {display}: images_used {images_used} != {used} produced by its jobs")
    if images_reserved != held:
        found.append(
            f"key {display}: images_reserved {images_reserved} != {held} in unfinished jobs"
        )
    if cap is not None and images_used > cap:
        found.append(f"key {display}: {images_used} used over cap {cap}")
    return found


def _not_integers(session: AsyncSession) -> list[Select]:
    """Money stored as something other than an integer. SQLite keeps whatever a statement
    computes, so an overflowing sum would silently become a float; PostgreSQL's BIGINT
    refuses it instead, so there is nothing to look for there."""
    if session.bind.dialect.name != "sqlite":
        return []
    checks = []
    for table, key, columns in (
        (User, User.name, (User.balance_minor,)),
        (LedgerEntry, LedgerEntry.id, (LedgerEntry.amount_minor,)),
        (Job, Job.id, (Job.price_minor, Job.cost_minor)),
    ):
        for column in columns:
            query = (
                select(literal(f"{table.__tablename__}.{column.key}"), key, column)
                .where(func.typeof(column) != "integer")
                .order_by(key)
            )
            checks.append(query)
    return checks


# invariant -> how each offending row is worded
_CHECKS: list[tuple[Callable[[], Select], Callable[[Any], list[str]]]] = [
    (
        _balances_off_ledger,
        lambda r: [f"user {r[0]}: balance {r[1]} != ledger sum {r[2]}"],
    ),
    (_negative_balances, lambda r: [f"user {r[0]}: negative balance {r[1]}"]),
    (
        _costs_off_price,
        lambda r: [f"job {r[0]}: cost {r[1]} != {r[2]} images x {r[3]}"],
    ),
    (_charges_off_cost, lambda r: [f"job {r[0]}: charged {r[1]} != cost {r[2]}"]),
    (
        _reservations_kept,
        lambda r: [f"job {r[0]}: reservation not fully returned ({r[1]})"],
    ),
    (_charged_while_unfinished, lambda r: [f"job {r[0]}: charged while still {r[1]}"]),
    (_key_counters, _key_findings),
]


async def audit(db: Database) -> list[str]:
    """Every mismatch found, as sentences; empty when the books balance."""
    problems: list[str] = []
    async with db.read() as s:
        for query in _not_integers(s):
            for where, key, value in (await s.execute(query)).all():
                problems.append(f"{where} of {key} is not an integer ({value!r})")
        for make_query, words in _CHECKS:
            for row in (await s.execute(make_query())).all():
                problems.extend(words(row))
    return problems
