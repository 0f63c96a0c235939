"""The dashboard, a task's page, redeeming a code, the ledger (and its CSV) and the
password."""

from __future__ import annotations

import csv
import io

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pixgate.api.console.common import (
    ConsoleRoute,
    Session,
    console,
    form,
    money,
    page,
    refusal_text,
)
from pixgate.api.deps import core
from pixgate.core.console import ConsoleRefusal
from pixgate.errors import PixgateError

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


@router.get("/")
async def dashboard(request: Request, session: Session) -> Response:
    view = await console(request).dashboard(session.user)
    return page(request, "dashboard.html", dash=view)


@router.get("/tasks/{task_id}")
async def task(request: Request, session: Session, task_id: str) -> Response:
    view = await console(request).task(session.user, task_id)
    tasks = core(request).tasks
    images = [(tasks.image_url(i), i.seed) for i in view.images]
    return page(request, "task.html", task=view, images=images)


@router.get("/redeem")
async def redeem_form(request: Request, session: Session) -> Response:
    return page(request, "redeem.html")


@router.post("/redeem")
async def redeem(request: Request, session: Session) -> Response:
    data = await form(request, session)
    try:
        value, balance = await console(request).redeem(session.user, data.get("code", "").strip())
    except PixgateError as exc:
        return page(request, "redeem.html", exc.status, error=refusal_text(request, exc))
    return page(request, "redeem.html", done={"amount": money(value), "balance": money(balance)})


@router.get("/ledger")
async def ledger(request: Request, session: Session) -> Response:
    return page(request, "ledger.html", entries=await console(request).ledger(session.user))


@router.get("/ledger.csv")
async def ledger_csv(request: Request, session: Session) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    currency = console(request).currency
    writer.writerow(["id", "time_utc", "kind", f"amount_{currency}", "job_id", "key_id", "reason"])
    for e in await console(request).ledger(session.user, limit=100_000):
        writer.writerow(
            [
                e.id,
                e.created_at.isoformat(" ", "seconds"),
                e.kind,
                money(e.amount_minor),
                e.job_id or "",
                e.key_id or "",
                e.reason or "",
            ]
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="pixgate-ledger.csv"'},
    )


@router.get("/password")
async def password_form(request: Request, session: Session) -> Response:
    return page(request, "password.html")


@router.post("/password")
async def change_password(request: Request, session: Session) -> Response:
    data = await form(request, session)
    try:
        await console(request).change_password(
            session, data.get("current", ""), data.get("new", ""), data.get("repeat", "")
        )
    except ConsoleRefusal as exc:
        return page(request, "password.html", exc.status, error=refusal_text(request, exc))
    return page(request, "password.html", done=True)
