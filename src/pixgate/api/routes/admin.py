"""The admin API: users, credit, keys, redemption codes, the ledger, jobs and the audit.
Every endpoint needs a key whose account has the admin role."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pixgate.accounts import audit, codes, keys, users
from pixgate.api.deps import admin, core
from pixgate.api.validation import parse_json_object, validate
from pixgate.db import ApiKey, LedgerEntry, User
from pixgate.errors import invalid
from pixgate.money import from_minor, to_minor

router = APIRouter(prefix="/admin", tags=["admin"])


def user_json(u: User) -> dict:
    return {
        "id": u.id,
        "name": u.name,
        "role": u.role,
        "plan": u.plan,
        "enabled": u.enabled,
        "balance": str(from_minor(u.balance_minor)),
        "created_at": u.created_at.isoformat(),
    }


def key_json(k: ApiKey) -> dict:
    return {
        "id": k.id,
        "user_id": k.user_id,
        "display": k.display,
        "name": k.name,
        "image_cap": k.image_cap,
        "images_used": k.images_used,
        "enabled": k.enabled,
        "expires_at": k.expires_at.isoformat() if k.expires_at else None,
        "allowed_models": k.allowed_models,
        "allowed_ips": k.allowed_ips,
        "has_signing_secret": k.secret_enc is not None,
    }


def _amount(value: Decimal, field: str) -> int:
    try:
        return to_minor(value)
    except (InvalidOperation, ValueError) as exc:
        raise invalid(
            field,
            "must be a decimal amount with at most 4 decimal places",
            "必须是最多 4 位小数的金额",
        ) from exc


async def _body(request: Request, model: type[BaseModel]):
    return validate(model, parse_json_object(await request.body()))


class NewUserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: Literal["user", "admin"] = "user"
    plan: str | None = Field(default=None, max_length=32)


@router.post("/users", summary="Create a user (with the free grant)")
async def create_user(request: Request) -> dict:
    caller = await admin(request)
    body = await _body(request, NewUserBody)
    app_core = core(request)
    if body.plan is not None and body.plan not in app_core.settings.plans:
        raise invalid("plan", f"must be one of {', '.join(app_core.settings.plans)}")
    user = await app_core.create_user(body.name, body.role, body.plan, actor=caller.user.id)
    return user_json(user)


@router.get("/users", summary="List users")
async def list_users(request: Request) -> dict:
    await admin(request)
    return {
        "object": "list",
        "data": [user_json(u) for u in await users.list_users(core(request).db)],
    }


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str | None = Field(default=None, max_length=32)
    role: Literal["user", "admin"] | None = None
    enabled: bool | None = None


@router.patch("/users/{user}", summary="Change a user's plan, role or enabled flag")
async def patch_user(user: str, request: Request) -> dict:
    await admin(request)
    body = await _body(request, UserPatch)
    plans = core(request).settings.plans
    if body.plan is not None and body.plan not in plans:
        raise invalid("plan", f"must be one of {', '.join(plans)}")
    updated = await users.update_user(
        core(request).db, user, plan=body.plan, role=body.role, enabled=body.enabled
    )
    return user_json(updated)


class CreditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Decimal = Field(description='Currency amount, e.g. "10" or "-0.4".')
    kind: Literal["grant", "topup", "adjust"] = "topup"
    reason: str = Field(min_length=1, max_length=500)


@router.post("/users/{user}/credit", summary="Grant, top up or adjust credit, with a reason")
async def credit(user: str, request: Request) -> dict:
    caller = await admin(request)
    body = await _body(request, CreditBody)
    amount = _amount(body.amount, "amount")
    try:
        balance = await users.credit(
            core(request).db, user, amount, body.kind, body.reason, caller.user.id
        )
    except ValueError as exc:
        raise invalid("amount", str(exc)) from exc
    return {"user": user, "balance": str(from_minor(balance))}


class NewKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    images: int | None = Field(default=None, ge=0, description="Image cap.")
    prefix: str = Field(default="sk-", max_length=24)
    expires_at: datetime | None = None
    allowed_models: list[str] | None = None
    allowed_ips: list[str] | None = None
    signing_secret: bool = False


@router.post("/users/{user}/keys", summary="Create a key for a user (shown once)")
async def create_key(user: str, request: Request) -> dict:
    await admin(request)
    body = await _body(request, NewKeyBody)
    app_core = core(request)
    owner = await users.get_user(app_core.db, user)
    unknown = [m for m in body.allowed_models or [] if app_core.catalog.get(m) is None]
    if unknown:
        raise invalid(
            "allowed_models",
            f"unknown models {unknown}; known: {', '.join(app_core.catalog.names())}",
        )
    expires = body.expires_at
    if expires is not None and expires.tzinfo is not None:  # naive means UTC already
        expires = expires.astimezone(UTC).replace(tzinfo=None)
    spec = keys.KeySpec(
        name=body.name,
        image_cap=body.images,
        prefix=body.prefix,
        expires_at=expires,
        allowed_models=body.allowed_models,
        allowed_ips=body.allowed_ips,
        with_secret=body.signing_secret,
    )
    try:
        made = await keys.create_key(app_core.db, owner.id, spec, app_core.box)
    except ValueError as exc:
        field = "allowed_ips" if "CIDR" in str(exc) else "prefix"
        raise invalid(field, str(exc)) from exc
    return {
        "id": made.id,
        "key": made.key,
        "display": made.display,
        "user_id": owner.id,
        "signing_secret": made.secret,
    }


class KeyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool


@router.patch("/keys/{key}", summary="Disable or re-enable a key")
async def patch_key(key: str, request: Request) -> dict:
    await admin(request)
    body = await _body(request, KeyPatch)
    return key_json(await keys.set_enabled(core(request).db, key, body.enabled))


@router.get("/keys", summary="List keys")
async def list_keys(request: Request, user: str | None = None) -> dict:
    await admin(request)
    db = core(request).db
    user_id = await users.user_filter(db, user)
    return {"object": "list", "data": [key_json(k) for k in await keys.list_keys(db, user_id)]}


class MintBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, le=codes.MAX_BATCH)
    value: Decimal = Field(description="Currency amount per code.")


@router.post("/codes", summary="Mint a batch of single-use redemption codes (shown once)")
async def mint_codes(request: Request) -> dict:
    caller = await admin(request)
    body = await _body(request, MintBody)
    value = _amount(body.value, "value")
    if value <= 0:
        raise invalid("value", "must be greater than 0", "必须大于 0")
    batch, minted = await codes.mint(core(request).db, body.count, value, caller.user.id)
    return {"batch": batch, "value": str(from_minor(value)), "codes": minted}


@router.get("/ledger", summary="Ledger entries, newest first")
async def ledger(
    request: Request, user: str | None = None, limit: int = Query(default=100, ge=1, le=1000)
) -> dict:
    await admin(request)
    db = core(request).db
    user_id = await users.user_filter(db, user)
    rows: list[LedgerEntry] = await users.ledger(db, user_id, limit)
    return {
        "object": "list",
        "data": [
            {
                "id": e.id,
                "user_id": e.user_id,
                "kind": e.kind,
                "amount": str(from_minor(e.amount_minor)),
                "job_id": e.job_id,
                "key_id": e.key_id,
                "reason": e.reason,
                "actor": e.actor,
                "created_at": e.created_at.isoformat(),
            }
            for e in rows
        ],
    }


@router.get("/jobs", summary="Jobs, newest first")
async def jobs(
    request: Request,
    status: str | None = None,
    user: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict:
    await admin(request)
    app_core = core(request)
    user_id = await users.user_filter(app_core.db, user)
    rows = await app_core.queue.recent(user_id, status, limit)
    return {
        "object": "list",
        "data": [
            {
                "id": j.id,
                "user_id": j.user_id,
                "key_id": j.key_id,
                "model": j.model,
                "status": j.status,
                "n": j.n,
                "n_succeeded": j.n_succeeded,
                "seed": j.seed,
                "cost": str(from_minor(j.cost_minor)),
                "error_code": j.error_code,
                "created_at": j.created_at.isoformat(),
                "finished_at": j.finished_at.isoformat() if j.finished_at else None,
            }
            for j in rows
        ],
    }


@router.get("/audit", summary="Check balances against the ledger and jobs against charges")
async def run_audit(request: Request) -> dict:
    await admin(request)
    problems = await audit.audit(core(request).db)
    return {"ok": not problems, "problems": problems}
