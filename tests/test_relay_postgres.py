"""Relayed jobs on PostgreSQL: a burst larger than the relay lane (so jobs queue and are
claimed several at a time, besides those taken at admission) all succeed once, are
charged once, and the audit is clean; a second node without workers answers the same."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from pixgate.db import ChannelAttempt, Database
from tests.conftest import balance
from tests.relay_servers import GENERATIONS, PRICE, audit_clean, relayed
from tests.upstreams import FakeUpstream

pytestmark = pytest.mark.postgres


async def _burst(url: str, key: str, total: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=total)
    async with httpx.AsyncClient(
        base_url=url, timeout=60, limits=limits, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        return await asyncio.gather(
            *(
                client.post(GENERATIONS, json={"model": "pg-relayed", "prompt": f"p{i}"})
                for i in range(total)
            )
        )


async def _attempts(url: str) -> int:
    db = Database(url)
    try:
        async with db.read() as s:
            return await s.scalar(select(func.count()).select_from(ChannelAttempt))
    finally:
        await db.dispose()


def test_a_burst_past_the_relay_lane_on_postgres(make_server, postgres_url):
    with FakeUpstream("openai") as up:
        up.set("slow", seconds=0.2)  # calls overlap: later jobs queue behind the lane
        server = make_server(
            channels=[up.channel("pg-up").model_dump() | {"api_key": up.api_key}],
            models=[relayed("pg-relayed", "pg-up")],
            demo=False,
            database_url=postgres_url,
            relay_concurrency=4,
            max_queue=100,
        )
        key = server.create_key(credit="100")
        answers = asyncio.run(_burst(server.url, key, 24))
        assert [r.status_code for r in answers] == [200] * 24, [r.text for r in answers]
        assert len(up.calls) == 24  # each job called the upstream exactly once
        assert up.max_in_flight <= 4
    assert balance(server, key) == Decimal("100") - 24 * Decimal(PRICE)
    assert asyncio.run(_attempts(postgres_url)) == 24
    audit_clean(server)
