"""Consistency checks over the money: run by `pixgate audit`, and by tests after every
concurrency run. Any finding means something moved money outside `billing`."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select

from pixgate.db import ApiKey, Database, Job, LedgerEntry, User


async def audit(db: Database) -> list[str]:
    """Every mismatch found, as sentences; empty when the books balance."""
    problems: list[str] = []
    async with db.read() as s:
        sums = dict(
            (
                await s.execute(
                    select(LedgerEntry.user_id, func.sum(LedgerEntry.amount_minor)).group_by(
                        LedgerEntry.user_id
                    )
                )
            ).all()
        )
        for user in (await s.scalars(select(User))).all():
            total = int(sums.get(user.id) or 0)
            if user.balance_minor != total:
                problems.append(
                    f"user {user.name}: balance {user.balance_minor} != ledger sum {total}"
                )
            if user.balance_minor < 0:
                problems.append(f"user {user.name}: negative balance {user.balance_minor}")

        by_job: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        rows = await s.execute(
            select(LedgerEntry.job_id, LedgerEntry.kind, func.sum(LedgerEntry.amount_minor))
            .where(LedgerEntry.job_id.is_not(None))
            .group_by(LedgerEntry.job_id, LedgerEntry.kind)
        )
        for job_id, kind, amount in rows.all():
            by_job[job_id][kind] = int(amount)

        used: dict[str, int] = defaultdict(int)
        reserved: dict[str, int] = defaultdict(int)
        for job in (await s.scalars(select(Job))).all():
            entries = by_job.get(job.id, {})
            expected_cost = job.n_succeeded * job.price_minor
            if job.key_id is not None:
                used[job.key_id] += job.n_succeeded
                if not job.finished and job.cap_reserved:
                    reserved[job.key_id] += job.n
            if job.finished:
                if job.cost_minor != expected_cost:
                    problems.append(
                        f"job {job.id}: cost {job.cost_minor} != {job.n_succeeded} images x "
                        f"{job.price_minor}"
                    )
                charged = -entries.get("charge", 0)
                if job.user_id is not None and charged != job.cost_minor:
                    problems.append(f"job {job.id}: charged {charged} != cost {job.cost_minor}")
                held = entries.get("reserve", 0) + entries.get("refund", 0)
                if held != 0:
                    problems.append(f"job {job.id}: reservation not fully returned ({held})")
            elif entries.get("charge") or entries.get("refund"):
                problems.append(f"job {job.id}: charged while still {job.status}")

        for key in (await s.scalars(select(ApiKey))).all():
            if key.images_used != used[key.id]:
                problems.append(
                    f"key {key.display}: images_used {key.images_used} != {used[key.id]} "
                    "produced by its jobs"
                )
            if key.images_reserved != reserved[key.id]:
                problems.append(
                    f"key {key.display}: images_reserved {key.images_reserved} != "
                    f"{reserved[key.id]} in unfinished jobs"
                )
            if key.image_cap is not None and key.images_used > key.image_cap:
                problems.append(
                    f"key {key.display}: {key.images_used} used over cap {key.image_cap}"
                )
    return problems
