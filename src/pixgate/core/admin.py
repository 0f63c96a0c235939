"""The operator's actions: users, credit, keys, redemption codes, the ledger, jobs and the
audit. The admin API calls these; each refusal is a PixgateError naming the field."""

from __future__ import annotations

from pixgate.accounts import audit, codes, keys, topups, users
from pixgate.accounts.secrets import SecretBox
from pixgate.core.identity import Identity
from pixgate.core.views import LedgerView, TaskView, ledger_view, task_view
from pixgate.db import ApiKey, ChannelAttempt, Database, User
from pixgate.errors import PixgateError, invalid
from pixgate.queue import channels, queries
from pixgate.queue.jobs import JobQueue
from pixgate.spec.catalog import Catalog


class Administration:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        queue: JobQueue,
        box: SecretBox,
        identity: Identity,
    ):
        self._db = db
        self._catalog = catalog
        self._queue = queue
        self._box = box
        self._identity = identity

    # --- users and credit ----------------------------------------------------------------
    async def create_user(
        self, name: str, role: str = "user", plan: str | None = None, actor: str | None = None
    ) -> User:
        """A new user with the free grant."""
        self._identity.check_plan(plan)
        return await self._identity.create_user(name, role, plan, actor)

    async def list_users(self) -> list[User]:
        return await users.list_users(self._db)

    async def update_user(
        self,
        user: str,
        *,
        plan: str | None = None,
        role: str | None = None,
        enabled: bool | None = None,
    ) -> User:
        self._identity.check_plan(plan)
        return await users.update_user(self._db, user, plan=plan, role=role, enabled=enabled)

    async def credit(self, user: str, amount_minor: int, kind: str, reason: str, actor: str) -> int:
        """Grant, top up or adjust a user's credit; returns the new balance."""
        try:
            return await users.credit(
                self._db, user, amount_minor, kind, reason, actor, self._identity.plan_move()
            )
        except ValueError as exc:
            raise invalid("amount", str(exc)) from exc

    async def top_up(
        self, user: str, amount_minor: int, idempotency_key: str, reason: str, actor: str
    ) -> topups.TopUp:
        """The payment system's top-up: credited once per Idempotency-Key."""
        return await topups.top_up(
            self._db,
            user,
            amount_minor,
            idempotency_key,
            reason,
            actor=actor,
            move=self._identity.plan_move(),
        )

    async def ledger(self, user: str | None, limit: int) -> list[LedgerView]:
        user_id = await users.user_filter(self._db, user)
        return [ledger_view(e) for e in await users.ledger(self._db, user_id, limit)]

    # --- keys and codes ------------------------------------------------------------------
    async def create_key(self, user: str, spec: keys.KeySpec) -> tuple[User, keys.CreatedKey]:
        """A key for `user` (the raw key and signing secret are in the result, once)."""
        owner = await users.get_user(self._db, user)
        unknown = [m for m in spec.allowed_models or [] if self._catalog.get(m) is None]
        if unknown:
            raise invalid(
                "allowed_models",
                f"unknown models {unknown}; known: {', '.join(self._catalog.names())}",
            )
        try:
            return owner, await keys.create_key(self._db, owner.id, spec, self._box)
        except ValueError as exc:
            field = "allowed_ips" if "CIDR" in str(exc) else "prefix"
            raise invalid(field, str(exc)) from exc

    async def set_key_enabled(self, key: str, enabled: bool) -> ApiKey:
        return await keys.set_enabled(self._db, key, enabled)

    async def set_key_explicit_label(self, key: str, value: bool | None) -> ApiKey:
        return await keys.set_explicit_label(self._db, key, value)

    async def list_keys(self, user: str | None) -> list[ApiKey]:
        return await keys.list_keys(self._db, await users.user_filter(self._db, user))

    async def mint_codes(self, count: int, value_minor: int, actor: str) -> tuple[str, list[str]]:
        """(batch id, the raw codes: shown once)."""
        return await codes.mint(self._db, count, value_minor, actor)

    # --- jobs and the books --------------------------------------------------------------
    async def jobs(self, user: str | None, status: str | None, limit: int) -> list[TaskView]:
        user_id = await users.user_filter(self._db, user)
        return [task_view(j) for j in await queries.recent_jobs(self._db, user_id, status, limit)]

    async def job(self, job_id: str) -> tuple[TaskView, list[ChannelAttempt]]:
        """Any job, with its upstream calls (relayed jobs); 404 when there is none."""
        job = await self._queue.get(job_id)
        if job is None:
            raise PixgateError("not_found", args_={"path": f"job {job_id}"})
        return task_view(job), await channels.attempts_of(self._db, job_id)

    async def audit(self) -> list[str]:
        """Every mismatch between balances, the ledger, jobs and key counters."""
        return await audit.audit(self._db)
