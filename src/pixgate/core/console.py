"""What the web console does for a logged-in customer: sign up, log in (rate-limited per
IP and per account), sessions, password change, and the account's own keys, codes,
ledger and tasks. It calls the same account functions as the API and the CLI
(`users.create_user` through `Identity`, `keys`, `codes`); nothing here is a second copy
of account logic. Refusals are `ConsoleRefusal`s naming a message of
`pixgate.messages_console`, or the domain's own `PixgateError`s."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pixgate.accounts import codes, keys, logins, passwords, sessions, usage, users
from pixgate.accounts.limits import RateLimiter
from pixgate.accounts.sessions import ActiveSession, NewSession, SessionPolicy
from pixgate.core.admin import Administration
from pixgate.core.identity import CREDIT_KINDS, Identity
from pixgate.core.views import LedgerView, TaskView, ledger_view, task_view
from pixgate.db import ApiKey, Database, User, utcnow
from pixgate.errors import PixgateError
from pixgate.queue import queries
from pixgate.queue.jobs import JobQueue
from pixgate.settings import Settings
from pixgate.spec.catalog import Catalog

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class ConsoleRefusal(Exception):
    """A console form refused: `message` names a pixgate.messages_console string."""

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Dashboard:
    currency: str
    balance_minor: int
    granted_minor: int
    free_grant_minor: int
    used_minor: int
    plan: str
    images_used: int
    remaining_images: int | None  # at the default model's price; None: unlimited
    remaining_model: str
    tasks: list[TaskView]


class Console:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        db: Database,
        queue: JobQueue,
        limiter: RateLimiter,
        identity: Identity,
        admin: Administration,
    ):
        self._settings = settings
        self._catalog = catalog
        self._db = db
        self._queue = queue
        self._limiter = limiter
        self._identity = identity
        self._admin = admin
        self.policy = SessionPolicy(
            settings.console_session_hours, settings.console_session_max_days
        )

    @property
    def signup_open(self) -> bool:
        return self._settings.console_signup

    @property
    def currency(self) -> str:
        """The deployment's currency code, which every amount on the pages is in."""
        return self._settings.currency

    # --- accounts and sessions -----------------------------------------------------------
    async def signup(self, name: str, email: str, password: str) -> NewSession:
        """A new user on the default plan with the free grant, logged in."""
        if not self.signup_open:
            raise ConsoleRefusal("signup_closed", 403)
        name, email = name.strip(), logins.normalize_email(email)
        if not NAME_RE.match(name) or "@" in name:
            raise ConsoleRefusal("name_invalid", field="name")
        if not EMAIL_RE.match(email) or len(email) > 254:
            raise ConsoleRefusal("email_invalid", field="email")
        if problem := passwords.check_strength(password):
            raise ConsoleRefusal(problem, field="password")
        if await logins.email_taken(self._db, email):
            raise ConsoleRefusal("email_taken", 409, "email")
        try:
            user = await self._identity.create_user(
                name, email=email, password_hash=passwords.hash_password(password), actor="console"
            )
        except PixgateError as exc:
            if exc.code == "user_exists":  # the name, or an email taken a moment ago
                raise ConsoleRefusal("name_taken", 409, "name") from exc
            raise
        return await sessions.create(self._db, user.id, self.policy)

    async def login(self, login: str, password: str, ip: str | None) -> NewSession:
        """A session for the account, or `login_failed` (the same whether the account
        exists or not); 429 after too many failures from this IP or for this login."""
        account = login.strip().lower()[:254]
        limits = (
            self._settings.console_login_per_ip_per_minute,
            self._settings.console_login_per_account_per_minute,
        )
        await self._limiter.check_login(ip, account, *limits)
        user = await logins.find_by_login(self._db, login)
        stored = user.password_hash if user is not None else None
        ok = passwords.verify_password(stored, password[: passwords.MAX_LENGTH])
        if not ok or user is None or not user.enabled:
            await self._limiter.failed_login(ip, account, *limits)
            raise ConsoleRefusal("login_failed", 401)
        if stored and passwords.needs_rehash(stored):
            await logins.set_password_hash(self._db, user.id, passwords.hash_password(password))
        return await sessions.create(self._db, user.id, self.policy)

    async def session(self, token: str | None) -> ActiveSession | None:
        return await sessions.lookup(self._db, token, self.policy)

    async def logout(self, session: ActiveSession) -> None:
        await sessions.revoke(self._db, session.id)

    async def logout_everywhere(self, session: ActiveSession) -> int:
        return await sessions.revoke_all(self._db, session.user.id)

    async def change_password(
        self, session: ActiveSession, current: str, new: str, repeat: str
    ) -> None:
        """Set a new password and end the account's other sessions."""
        if not session.user.password_hash:
            raise ConsoleRefusal("no_password")
        if not passwords.verify_password(session.user.password_hash, current):
            raise ConsoleRefusal("password_wrong", field="current")
        if problem := passwords.check_strength(new):
            raise ConsoleRefusal(problem, field="new")
        if new != repeat:
            raise ConsoleRefusal("password_mismatch", field="repeat")
        await logins.set_password_hash(self._db, session.user.id, passwords.hash_password(new))
        await sessions.revoke_all(self._db, session.user.id, keep=session.id)

    # --- the account's own things --------------------------------------------------------
    async def dashboard(self, user: User, tasks: int = 10) -> Dashboard:
        user = await users.get_user(self._db, user.id)  # the balance as of now
        totals = await usage.ledger_totals(self._db, user.id)
        own_keys = await keys.list_keys(self._db, user.id)
        default = self._catalog.default()
        price = default.price_minor if self._settings.billing_enabled else 0
        recent = await queries.recent_jobs(self._db, user.id, limit=tasks)
        return Dashboard(
            currency=self._settings.currency,
            balance_minor=user.balance_minor,
            granted_minor=sum(totals.get(k, 0) for k in CREDIT_KINDS),
            free_grant_minor=totals.get("grant", 0),
            used_minor=-totals.get("charge", 0),
            plan=self._identity.plan(user)[0],
            images_used=sum(k.images_used for k in own_keys),
            remaining_images=user.balance_minor // price if price > 0 else None,
            remaining_model=default.name,
            tasks=[task_view(j) for j in recent],
        )

    async def keys(self, user: User) -> list[ApiKey]:
        return await keys.list_keys(self._db, user.id)

    async def create_key(
        self, user: User, name: str | None, image_cap: int | None, expires_at: datetime | None
    ) -> keys.CreatedKey:
        if expires_at is not None and expires_at <= utcnow():
            raise ConsoleRefusal("expires_invalid", field="expires")
        spec = keys.KeySpec(name=name or None, image_cap=image_cap, expires_at=expires_at)
        return (await self._admin.create_key(user.id, spec))[1]

    async def set_key_enabled(self, user: User, key_id: str, enabled: bool) -> ApiKey:
        """Disable or re-enable one of the user's own keys; another's is not found."""
        own = {k.id for k in await keys.list_keys(self._db, user.id)}
        if key_id not in own:
            raise PixgateError("key_not_found", args_={"key": key_id})
        return await keys.set_enabled(self._db, key_id, enabled)

    async def redeem(self, user: User, code: str) -> tuple[int, int]:
        """(credited, new balance), in minor units."""
        return await codes.redeem(self._db, user.id, code, self._identity.plan_move())

    async def ledger(self, user: User, limit: int = 200) -> list[LedgerView]:
        return [ledger_view(e) for e in await users.ledger(self._db, user.id, limit)]

    async def task(self, user: User, job_id: str) -> TaskView:
        """One of the user's own tasks; another's reads as not found."""
        job = await self._queue.get(job_id)
        if job is None or job.user_id != user.id:
            raise PixgateError("job_not_found", args_={"job": job_id})
        return task_view(job)
