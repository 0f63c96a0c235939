"""The admin view of upstream channels: `GET /admin/channels` (state, success rate,
latency percentiles, images, upstream cost and margin over the last hour and day),
`GET /admin/channels/{name}`, enabling and disabling, and one real test call. Credentials
never appear: a channel is shown by its name, type, URL and routing settings."""

from __future__ import annotations

import dataclasses
from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from pixgate.api.deps import Admin, admin, core
from pixgate.api.schemas import ListOf, documented
from pixgate.core.channels import ChannelTest, ChannelView
from pixgate.money import from_minor
from pixgate.queue.channels import WindowStats

router = APIRouter(prefix="/admin/channels", tags=["admin"], dependencies=[Depends(admin)])


class Latency(BaseModel):
    p50: int | None
    p95: int | None
    p99: int | None


class Window(BaseModel):
    calls: int
    ok: int
    success_rate: float | None
    latency_ms: Latency
    images: int
    upstream_cost: str
    revenue: str
    margin: str


class ChannelInfo(BaseModel):
    name: str
    type: str
    base_url: str
    priority: int
    weight: float
    timeout_seconds: float
    max_concurrency: int | None
    upstream_price: str
    models: list[str]
    state: Literal["closed", "open", "half_open", "busy", "disabled"]
    disabled: bool
    disabled_reason: str | None
    last_hour: Window
    last_day: Window


class ChannelList(ListOf):
    data: list[ChannelInfo]


class ChannelTestResult(BaseModel):
    channel: str
    model: str
    ok: bool
    latency_ms: int
    images: int
    error: str | None


def window_json(w: WindowStats) -> dict:
    return {
        "calls": w.calls,
        "ok": w.ok,
        "success_rate": w.success_rate,
        "latency_ms": w.latency_ms,
        "images": w.images,
        "upstream_cost": str(from_minor(w.upstream_cost_minor)),
        "revenue": str(from_minor(w.revenue_minor)),
        "margin": str(from_minor(w.margin_minor)),
    }


def channel_json(v: ChannelView) -> dict:
    s = v.spec
    return {
        "name": s.name,
        "type": s.type,
        "base_url": s.base_url,
        "priority": s.priority,
        "weight": s.weight,
        "timeout_seconds": s.timeout_seconds,
        "max_concurrency": s.max_concurrency,
        "upstream_price": str(s.upstream_price),
        "models": v.models,
        "state": v.state,
        "disabled": v.disabled,
        "disabled_reason": v.reason,
        "last_hour": window_json(v.stats["hour"]),
        "last_day": window_json(v.stats["day"]),
    }


def test_json(t: ChannelTest) -> dict:
    return dataclasses.asdict(t)


@router.get("", summary="Upstream channels: state, health and margin", **documented(ChannelList))
async def list_channels(request: Request) -> dict:
    views = await core(request).channels.list()
    return {"object": "list", "data": [channel_json(v) for v in views]}


@router.get("/{name}", summary="One upstream channel", **documented(ChannelInfo))
async def get_channel(request: Request, name: str) -> dict:
    return channel_json(await core(request).channels.get(name))


@router.post(
    "/{name}/enable",
    summary="Enable a channel (also after an upstream refused its credentials)",
    **documented(ChannelInfo),
)
async def enable_channel(request: Request, name: str, caller: Admin) -> dict:
    view = await core(request).channels.set_enabled(name, True, caller.user.name)
    return channel_json(view)


@router.post("/{name}/disable", summary="Take a channel out of routing", **documented(ChannelInfo))
async def disable_channel(request: Request, name: str, caller: Admin) -> dict:
    view = await core(request).channels.set_enabled(name, False, caller.user.name)
    return channel_json(view)


@router.post(
    "/{name}/test",
    summary="One real call to the channel (nothing stored or charged)",
    **documented(ChannelTestResult),
)
async def test_channel(request: Request, name: str, model: str | None = None) -> dict:
    return test_json(await core(request).channels.test(name, model))
