"""What a key's owner can see and do: balance, usage, redeeming codes."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from pixgate.accounts import codes, usage
from pixgate.api.deps import authenticated, core
from pixgate.api.validation import parse_json_object, validate
from pixgate.db import LedgerEntry
from pixgate.errors import invalid
from pixgate.money import from_minor

router = APIRouter(tags=["account"])

_CREDITS = ("grant", "topup", "redemption", "adjust")


@router.get("/v1/dashboard/billing/credit_grants", summary="Balance and usage of the key's account")
async def credit_grants(request: Request) -> dict:
    app_core = core(request)
    caller = await authenticated(request)
    async with app_core.db.read() as s:
        sums = dict(
            (
                await s.execute(
                    select(LedgerEntry.kind, func.sum(LedgerEntry.amount_minor))
                    .where(LedgerEntry.user_id == caller.user.id)
                    .group_by(LedgerEntry.kind)
                )
            ).all()
        )
    granted = sum(int(sums.get(k) or 0) for k in _CREDITS)
    used = -int(sums.get("charge") or 0)
    default = app_core.default_model()
    price = default.price_minor if app_core.settings.billing_enabled else 0
    return {
        "object": "credit_summary",
        "currency": app_core.settings.currency,
        "total_granted": str(from_minor(granted)),
        "total_used": str(from_minor(used)),
        "total_available": str(from_minor(caller.user.balance_minor)),
        "plan": app_core.plan(caller.user)[0],
        "key": {
            "display": caller.key.display,
            "image_cap": caller.key.image_cap,
            "used_images": caller.key.images_used,
            "remaining_images": usage.remaining_images(caller.key, caller.user, price),
            "remaining_images_model": default.name,
        },
    }


@router.get("/v1/usage", summary="Usage of the key's account per key, model or day")
async def get_usage(
    request: Request,
    group_by: Literal["key", "model", "day"] = "day",
    start: date | None = Query(default=None, description="first UTC day (default: 30 days ago)"),
    end: date | None = Query(default=None, description="last UTC day (default: today)"),
) -> dict:
    caller = await authenticated(request)
    end = end or date.today()
    start = start or end - timedelta(days=30)
    if start > end:
        raise invalid("start", f"must not be after end ({end})", f"不能晚于 end({end})")
    rows = await usage.usage(core(request).db, caller.user.id, group_by, start, end)
    return {
        "object": "list",
        "group_by": group_by,
        "start": str(start),
        "end": str(end),
        "currency": core(request).settings.currency,
        "data": rows,
    }


class RedeemRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=4, max_length=64)


@router.post("/v1/redeem", summary="Redeem a code for credit")
async def redeem(request: Request) -> dict:
    caller = await authenticated(request)
    body = validate(RedeemRequest, parse_json_object(await request.body()))
    value, balance = await codes.redeem(core(request).db, caller.user.id, body.code)
    return {
        "credited": str(from_minor(value)),
        "balance": str(from_minor(balance)),
        "currency": core(request).settings.currency,
    }
