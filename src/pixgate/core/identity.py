"""Who is calling, and what their account holds: key and signed-key authentication (with
the per-IP failed-authentication limit and the replay guard), plans, new users with their
grant, and the owner's view of the account (balance, usage, redeeming codes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date

from pixgate.accounts import codes, keys, usage, users
from pixgate.accounts.keys import Caller
from pixgate.accounts.limits import RateLimiter
from pixgate.accounts.replay import ReplayGuard
from pixgate.accounts.secrets import SecretBox
from pixgate.db import Database, User
from pixgate.errors import PixgateError, invalid
from pixgate.money import to_minor
from pixgate.queue.webhooks import account_secret
from pixgate.settings import Plan, Settings
from pixgate.spec.catalog import Catalog, ModelSpec

# Ledger kinds that add credit (what `total_granted` sums).
CREDIT_KINDS = ("grant", "topup", "redemption", "adjust")


@dataclass(frozen=True)
class SignedCaller:
    caller: Caller
    secret: str | None  # None: the key has no signing secret


@dataclass(frozen=True)
class AccountSummary:
    """The owner's view of an account and the key they asked with."""

    currency: str
    granted_minor: int
    used_minor: int
    balance_minor: int
    plan: str
    key_display: str
    image_cap: int | None
    used_images: int
    remaining_images: int | None  # at the default model's price; None: unlimited
    remaining_images_model: str


@dataclass(frozen=True)
class UsageReport:
    currency: str
    rows: list[dict]  # {group, requests, images, cost}


@dataclass(frozen=True)
class Redemption:
    currency: str
    credited_minor: int
    balance_minor: int


class Identity:
    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        db: Database,
        box: SecretBox,
        limiter: RateLimiter,
        replays: ReplayGuard,
        webhook_key: bytes,
    ):
        self._settings = settings
        self._catalog = catalog
        self._db = db
        self._box = box
        self._limiter = limiter
        self._replays = replays
        self._webhook_key = webhook_key

    # --- authentication ------------------------------------------------------------------
    async def authenticate(self, raw_key: str | None, ip: str | None = None) -> Caller:
        """The caller's key and account. An IP that keeps failing gets 429 before its keys
        are even looked at."""
        return await self._counting_failures(ip, lambda: keys.authenticate(self._db, raw_key, ip))

    async def authenticate_signed(self, access_key: str, ip: str | None = None) -> SignedCaller:
        """The caller and signing secret for a request signed with a key's id (the access
        key of Volcengine V4 signing, aichat's md5 sign). The caller must still verify the
        signature with the secret, and refuse a key without one (secret None)."""
        caller = await self._counting_failures(
            ip, lambda: keys.authenticate_key_id(self._db, access_key, ip)
        )
        return SignedCaller(caller, self.signing_secret(caller))

    async def _counting_failures(
        self, ip: str | None, lookup: Callable[[], Awaitable[Caller]]
    ) -> Caller:
        """Run a key lookup behind the per-IP failed-authentication limit, counting a 401."""
        await self._limiter.check_ip(ip)
        try:
            return await lookup()
        except PixgateError as exc:
            if exc.status == 401:
                await self._limiter.failed_auth(ip)
            raise

    def signing_secret(self, caller: Caller) -> str | None:
        """The key's signing secret in clear, or None when the key has none."""
        return self._box.decrypt(caller.key.secret_enc) if caller.key.secret_enc else None

    async def signature_failed(self, ip: str | None) -> None:
        """Count a bad signature like a bad key (per-IP failed-auth limit)."""
        await self._limiter.failed_auth(ip)

    async def first_use_of_signature(self, signature: str, ttl_seconds: float) -> bool:
        """Remember a signed request's signature for `ttl_seconds` (until its timestamp
        would be refused anyway); False if it was already seen: the request is a replay.
        Shared by all API nodes through Redis when `redis_url` is set."""
        return await self._replays.first_use(signature, ttl_seconds)

    def webhook_secret(self, caller: Caller) -> str:
        """The account's webhook signing secret (used when a task names none)."""
        return account_secret(self._webhook_key, caller.user.id)

    # --- plans and users -----------------------------------------------------------------
    def plan(self, user: User) -> tuple[str, Plan]:
        """The user's plan, or the default plan if theirs is no longer configured."""
        plans = self._settings.plans
        name = user.plan if user.plan in plans else self._settings.default_plan
        return name, plans[name]

    def plan_move(self) -> users.PlanMove | None:
        """Where paying moves a user on the default plan; None when `paid_plan` is not a
        configured plan (a deployment whose plans have no `paid` and that set none)."""
        paid = self._settings.paid_plan
        if paid not in self._settings.plans:
            return None
        return users.PlanMove(self._settings.default_plan, paid)

    def check_plan(self, plan: str | None) -> None:
        """A 400 naming `plan` unless it is configured (None: keep the current one)."""
        if plan is not None and plan not in self._settings.plans:
            raise invalid("plan", f"must be one of {', '.join(self._settings.plans)}")

    def new_user_grant(self) -> int:
        """Minor units a new user starts with: `free_grant`, else free_grant_images at the
        default model's price, or at the cheapest priced model's when the default one is
        free (demo mode's is: a grant of 0 would refuse the paid seed names' first request)."""
        if self._settings.free_grant is not None:
            return to_minor(self._settings.free_grant)
        price = self._catalog.default().price_minor or min(
            (m.price_minor for m in self._catalog if m.price_minor), default=0
        )
        return self._settings.free_grant_images * price

    async def create_user(
        self,
        name: str,
        role: str = "user",
        plan: str | None = None,
        actor: str | None = None,
        *,
        email: str | None = None,
        password_hash: str | None = None,
    ) -> User:
        """A new user on `plan` (default: the deployment's) with the free grant; the
        console's sign-up passes its login (email, password hash) too."""
        plan = plan or self._settings.default_plan
        if plan not in self._settings.plans:
            raise ValueError(f"plan must be one of {', '.join(self._settings.plans)}")
        new = users.NewUser(name, role, plan, self.new_user_grant(), email, password_hash)
        return await users.create_user(self._db, new, actor)

    # --- the owner's view ----------------------------------------------------------------
    def _price(self, spec: ModelSpec) -> int:
        return spec.price_minor if self._settings.billing_enabled else 0

    async def api_usage(self, key_id: str, spec: ModelSpec) -> dict[str, int | None]:
        """seed 000's api_usage for a key just used: images used, and how many its cap and
        the account's balance still allow at this model's price (None: unlimited). Read
        without the enabled/expiry/IP checks: the key was authenticated for this request."""
        caller = await keys.key_by_id_unchecked(self._db, key_id)
        return {
            "used_images": caller.key.images_used,
            "remaining_images": usage.remaining_images(caller.key, caller.user, self._price(spec)),
        }

    async def account_summary(self, caller: Caller) -> AccountSummary:
        totals = await usage.ledger_totals(self._db, caller.user.id)
        default = self._catalog.default()
        key = caller.key
        return AccountSummary(
            currency=self._settings.currency,
            granted_minor=sum(totals.get(k, 0) for k in CREDIT_KINDS),
            used_minor=-totals.get("charge", 0),
            balance_minor=caller.user.balance_minor,
            plan=self.plan(caller.user)[0],
            key_display=key.display,
            image_cap=key.image_cap,
            used_images=key.images_used,
            remaining_images=usage.remaining_images(key, caller.user, self._price(default)),
            remaining_images_model=default.name,
        )

    async def usage(
        self, caller: Caller, group_by: usage.GroupBy, start: date, end: date
    ) -> UsageReport:
        rows = await usage.usage(self._db, caller.user.id, group_by, start, end)
        return UsageReport(self._settings.currency, rows)

    async def redeem(self, caller: Caller, code: str) -> Redemption:
        value, balance = await codes.redeem(self._db, caller.user.id, code, self.plan_move())
        return Redemption(self._settings.currency, value, balance)
