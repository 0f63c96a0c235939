"""The admin API: users, credit, keys, redemption codes, the ledger, jobs and the audit.
Every endpoint needs a key whose account has the admin role: the router itself depends
on `admin`, so a route added here without a thought is still closed to everyone else."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pixgate.accounts import codes, keys
from pixgate.api.bodies import parse_json_object, read_capped
from pixgate.api.deps import Admin, admin, core
from pixgate.api.schemas import (
    AuditReport,
    Balance,
    JobDetail,
    JobList,
    KeyInfo,
    KeyList,
    LedgerList,
    MintedCodes,
    NewKey,
    UserInfo,
    UserList,
    documented,
    request_body,
)
from pixgate.api.validation import validate
from pixgate.core.views import TaskView
from pixgate.db import ApiKey, User
from pixgate.errors import invalid
from pixgate.money import from_minor, to_minor

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin)])


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
        "explicit_label": k.explicit_label,
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
    """The JSON body as `model`, read (capped while it streams) once `admin` passed."""
    return validate(model, parse_json_object(await read_capped(request)))


class NewUserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    role: Literal["user", "admin"] = "user"
    plan: str | None = Field(default=None, max_length=32)


@router.post(
    "/users",
    summary="Create a user (with the free grant)",
    openapi_extra=request_body(NewUserBody),
    **documented(UserInfo),
)
async def create_user(request: Request, caller: Admin) -> dict:
    body = await _body(request, NewUserBody)
    user = await core(request).admin.create_user(
        body.name, body.role, body.plan, actor=caller.user.id
    )
    return user_json(user)


@router.get("/users", summary="List users", **documented(UserList))
async def list_users(request: Request) -> dict:
    return {
        "object": "list",
        "data": [user_json(u) for u in await core(request).admin.list_users()],
    }


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str | None = Field(default=None, max_length=32)
    role: Literal["user", "admin"] | None = None
    enabled: bool | None = None


@router.patch(
    "/users/{user}",
    summary="Change a user's plan, role or enabled flag",
    openapi_extra=request_body(UserPatch),
    **documented(UserInfo),
)
async def patch_user(user: str, request: Request) -> dict:
    body = await _body(request, UserPatch)
    updated = await core(request).admin.update_user(
        user, plan=body.plan, role=body.role, enabled=body.enabled
    )
    return user_json(updated)


class CreditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Decimal = Field(
        description='Currency amount, e.g. "10" or "-0.4"; at most 1000000000 either way '
        "(negative only with kind adjust)."
    )
    kind: Literal["grant", "topup", "adjust"] = "topup"
    reason: str = Field(min_length=1, max_length=500)


@router.post(
    "/users/{user}/credit",
    summary="Grant, top up or adjust credit, with a reason",
    openapi_extra=request_body(CreditBody),
    **documented(Balance),
)
async def credit(user: str, request: Request, caller: Admin) -> dict:
    body = await _body(request, CreditBody)
    amount = _amount(body.amount, "amount")
    balance = await core(request).admin.credit(user, amount, body.kind, body.reason, caller.user.id)
    return {"user": user, "balance": str(from_minor(balance))}


class NewKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    images: int | None = Field(
        default=None, ge=0, le=keys.MAX_IMAGE_CAP, description="Image cap (0-1000000000)."
    )
    prefix: str = Field(default="sk-", max_length=24)
    expires_at: datetime | None = None
    allowed_models: list[str] | None = None
    allowed_ips: list[str] | None = None
    signing_secret: bool = False
    explicit_label: bool | None = Field(
        default=None,
        description="Draw the visible AI-generated label on this key's images (true/false); "
        "null: the deployment's explicit_label setting.",
    )


@router.post(
    "/users/{user}/keys",
    summary="Create a key for a user (shown once)",
    openapi_extra=request_body(NewKeyBody),
    **documented(NewKey),
)
async def create_key(user: str, request: Request) -> dict:
    body = await _body(request, NewKeyBody)
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
        explicit_label=body.explicit_label,
    )
    owner, made = await core(request).admin.create_key(user, spec)
    return {
        "id": made.id,
        "key": made.key,
        "display": made.display,
        "user_id": owner.id,
        "signing_secret": made.secret,
    }


class KeyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = Field(default=None, description="false disables the key.")
    explicit_label: bool | None = Field(
        default=None,
        description="Override the deployment's explicit label for this key; send null "
        "to follow the deployment again.",
    )


@router.patch(
    "/keys/{key}",
    summary="Disable or re-enable a key, or override its explicit label",
    openapi_extra=request_body(KeyPatch),
    **documented(KeyInfo),
)
async def patch_key(key: str, request: Request) -> dict:
    body = await _body(request, KeyPatch)
    if not body.model_fields_set:
        raise invalid(
            "body", "must set enabled or explicit_label", "必须设置 enabled 或 explicit_label"
        )
    if "enabled" in body.model_fields_set and body.enabled is None:
        raise invalid("enabled", "must be true or false", "必须为 true 或 false")
    admin = core(request).admin
    row = None
    if "explicit_label" in body.model_fields_set:
        row = await admin.set_key_explicit_label(key, body.explicit_label)
    if body.enabled is not None:
        row = await admin.set_key_enabled(key, body.enabled)
    assert row is not None
    return key_json(row)


@router.get("/keys", summary="List keys", **documented(KeyList))
async def list_keys(request: Request, user: str | None = None) -> dict:
    rows = await core(request).admin.list_keys(user)
    return {"object": "list", "data": [key_json(k) for k in rows]}


class MintBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, le=codes.MAX_BATCH)
    value: Decimal = Field(description="Currency amount per code (at most 1000000000).")


@router.post(
    "/codes",
    summary="Mint a batch of single-use redemption codes (shown once)",
    openapi_extra=request_body(MintBody),
    **documented(MintedCodes),
)
async def mint_codes(request: Request, caller: Admin) -> dict:
    body = await _body(request, MintBody)
    value = _amount(body.value, "value")
    if value <= 0:
        raise invalid("value", "must be greater than 0", "必须大于 0")
    batch, minted = await core(request).admin.mint_codes(body.count, value, caller.user.id)
    return {"batch": batch, "value": str(from_minor(value)), "codes": minted}


@router.get("/ledger", summary="Ledger entries, newest first", **documented(LedgerList))
async def ledger(
    request: Request, user: str | None = None, limit: int = Query(default=100, ge=1, le=1000)
) -> dict:
    rows = await core(request).admin.ledger(user, limit)
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


@router.get("/jobs", summary="Jobs, newest first", **documented(JobList))
async def jobs(
    request: Request,
    status: str | None = None,
    user: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict:
    rows = await core(request).admin.jobs(user, status, limit)
    return {"object": "list", "data": [job_json(j) for j in rows]}


def job_json(j: TaskView) -> dict:
    return {
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
        "channel": j.channel,
        "upstream_cost": str(from_minor(j.upstream_cost_minor)),
    }


@router.get(
    "/jobs/{job_id}",
    summary="One job, with its error and, for relayed jobs, every upstream call",
    **documented(JobDetail),
)
async def job_detail(request: Request, job_id: str) -> dict:
    job, attempts = await core(request).admin.job(job_id)
    return {
        **job_json(job),
        "error_message": job.error_message,
        "inference_seconds": job.inference_seconds,
        "upstream_calls": [
            {
                "channel": a.channel,
                "outcome": a.outcome,
                "http_status": a.http_status,
                "latency_ms": a.latency_ms,
                "images": a.images,
                "cost": str(from_minor(a.cost_minor)),
                "error": a.error,
            }
            for a in attempts
        ],
    }


@router.get(
    "/audit",
    summary="Check balances against the ledger and jobs against charges",
    **documented(AuditReport),
)
async def run_audit(request: Request) -> dict:
    problems = await core(request).admin.audit()
    return {"ok": not problems, "problems": problems}
