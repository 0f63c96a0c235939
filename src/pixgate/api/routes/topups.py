"""`POST /admin/topups`: the operator's payment system credits a paid amount. The
`Idempotency-Key` header names the payment, so a retried notification credits once."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from pixgate.accounts.topups import HEADER, MAX_KEY_LENGTH, check_key
from pixgate.api.deps import Admin, admin, core
from pixgate.api.routes.admin import _amount, _body
from pixgate.api.schemas import documented, request_body
from pixgate.money import from_minor

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin)])


class TopUpBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=200, description="The user's name or id.")
    amount: Decimal = Field(description='Currency amount paid, e.g. "12.50"; 0 < amount <= 1e9.')
    reason: str = Field(min_length=1, max_length=500, description='e.g. "order 1742".')


class TopUpResult(BaseModel):
    object: Literal["topup"] = "topup"
    id: int = Field(description="The top-up's ledger entry.")
    user: str
    user_id: str
    amount: str
    balance: str = Field(description="The account's balance now.")
    plan: str
    replayed: bool = Field(
        description="true: this Idempotency-Key was already credited; nothing was credited now."
    )


_KEY_PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": True,
    "description": "Names the payment: a retry with the same key credits nothing again.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
}


@router.post(
    "/topups",
    summary="Top up a user's credit once per Idempotency-Key (and move them to the paid plan)",
    openapi_extra={**request_body(TopUpBody), "parameters": [_KEY_PARAMETER]},
    **documented(TopUpResult),
)
async def top_up(request: Request, caller: Admin) -> dict:
    key = check_key(request.headers.get(HEADER))
    body = await _body(request, TopUpBody)
    amount = _amount(body.amount, "amount")
    made = await core(request).admin.top_up(body.user, amount, key, body.reason, caller.user.id)
    return {
        "object": "topup",
        "id": made.entry_id,
        "user": made.user.name,
        "user_id": made.user.id,
        "amount": str(from_minor(made.amount_minor)),
        "balance": str(from_minor(made.user.balance_minor)),
        "plan": made.user.plan,
        "replayed": made.replayed,
    }
