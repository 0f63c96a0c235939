"""What a key's owner can see and do: balance, usage, redeeming codes."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pixgate.api.deps import Authenticated, authenticated, core
from pixgate.api.schemas import CreditSummary, Redeemed, UsageList, documented, request_body
from pixgate.api.validation import json_model
from pixgate.errors import invalid
from pixgate.money import from_minor

# Every route needs a key: a forgotten parameter cannot open one.
router = APIRouter(tags=["account"], dependencies=[Depends(authenticated)])


@router.get(
    "/v1/dashboard/billing/credit_grants",
    summary="Balance and usage of the key's account",
    **documented(CreditSummary),
)
async def credit_grants(request: Request, caller: Authenticated) -> dict:
    summary = await core(request).identity.account_summary(caller)
    return {
        "object": "credit_summary",
        "currency": summary.currency,
        "total_granted": str(from_minor(summary.granted_minor)),
        "total_used": str(from_minor(summary.used_minor)),
        "total_available": str(from_minor(summary.balance_minor)),
        "plan": summary.plan,
        "key": {
            "display": summary.key_display,
            "image_cap": summary.image_cap,
            "used_images": summary.used_images,
            "remaining_images": summary.remaining_images,
            "remaining_images_model": summary.remaining_images_model,
        },
    }


@router.get(
    "/v1/usage",
    summary="Usage of the key's account per key, model or day",
    **documented(UsageList),
)
async def get_usage(
    request: Request,
    caller: Authenticated,
    group_by: Literal["key", "model", "day"] = "day",
    start: date | None = Query(default=None, description="first UTC day (default: 30 days ago)"),
    end: date | None = Query(default=None, description="last UTC day (default: today)"),
) -> dict:
    end = end or date.today()
    start = start or end - timedelta(days=30)
    if start > end:
        raise invalid("start", f"must not be after end ({end})", f"不能晚于 end({end})")
    report = await core(request).identity.usage(caller, group_by, start, end)
    return {
        "object": "list",
        "group_by": group_by,
        "start": str(start),
        "end": str(end),
        "currency": report.currency,
        "data": report.rows,
    }


class RedeemRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: str = Field(min_length=4, max_length=64)


@router.post(
    "/v1/redeem",
    summary="Redeem a code for credit",
    openapi_extra=request_body(RedeemRequest),
    **documented(Redeemed),
)
async def redeem(
    request: Request,
    caller: Authenticated,
    body: Annotated[RedeemRequest, Depends(json_model(RedeemRequest))],
) -> dict:
    redeemed = await core(request).identity.redeem(caller, body.code)
    return {
        "credited": str(from_minor(redeemed.credited_minor)),
        "balance": str(from_minor(redeemed.balance_minor)),
        "currency": redeemed.currency,
    }
