"""Money: the free grant, charging only produced images, insufficient credit, injected
engine failures, the audit, and the big concurrency run on SQLite."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from pixgate.accounts import users
from pixgate.accounts.audit import audit
from pixgate.db import Database
from pixgate.spec.catalog import ModelSpec
from tests.conftest import GENERATIONS, balance
from tests.fakes import DroppingEngine

PAID = ModelSpec(
    name="paid-64",
    source="builtin:tiny-sd",
    price=Decimal("0.2"),
    sizes=["64x64"],
    default_size="64x64",
    max_steps=4,
    default_steps=1,
)
FREE = ModelSpec(
    name="free-64",
    source="builtin:tiny-sd",
    sizes=["64x64"],
    default_size="64x64",
    max_steps=4,
    default_steps=1,
)


def run_audit(settings) -> list[str]:
    async def go():
        db = Database(settings.db_url)
        try:
            return await audit(db)
        finally:
            await db.dispose()

    return asyncio.run(go())


def test_new_user_gets_free_grant_at_default_price(make_server):
    srv = make_server(models=[PAID, FREE], demo=False, default_model="paid-64")

    async def make():
        from pixgate.core.service import Pixgate

        core = Pixgate(srv.settings)
        try:
            return await core.create_user("newcomer")
        finally:
            await core.db.dispose()

    user = asyncio.run(make())
    assert user.balance_minor == 30 * 2000  # 30 images x 0.2 CNY in 1/10000 units
    assert run_audit(srv.settings) == []


def test_charges_only_produced_images_and_ledger_balances(make_server):
    srv = make_server(models=[PAID, FREE], demo=False)
    k = srv.create_key(credit="1.0")
    with srv.client(k) as c:
        r = c.post(GENERATIONS, json={"model": "paid-64", "prompt": "x", "n": 3})
        assert r.status_code == 200, r.text
        assert balance(srv, k) == Decimal("0.4")
        assert c.post(GENERATIONS, json={"model": "free-64", "prompt": "x"}).status_code == 200
        assert balance(srv, k) == Decimal("0.4")
        err = c.post(GENERATIONS, json={"model": "paid-64", "prompt": "x", "n": 3})
        assert err.status_code == 429
        body = err.json()["error"]
        assert body["code"] == "insufficient_credit"
        assert "0.6" in body["message"] and "0.4" in body["message"]
        grants = c.get("/v1/dashboard/billing/credit_grants").json()
    assert grants["total_granted"] == "1" and grants["total_used"] == "0.6"
    assert grants["key"]["used_images"] == 4
    # seed 000's api_usage, as the Yuecheng dialect will render it: 0.4 left buys 2 images
    key_id = srv.key_row(k).id
    usage = asyncio.run_coroutine_threadsafe(
        srv.core.api_usage(key_id, srv.core.model("paid-64")), srv.server_loop()
    ).result(10)
    assert usage == {"used_images": 4, "remaining_images": 2}
    assert run_audit(srv.settings) == []


def test_injected_failures_billed_equals_produced(make_server):
    srv = make_server(models=[PAID], demo=False)
    srv.core.worker.engine = DroppingEngine(srv.core.worker.engine)
    k = srv.create_key(credit="5", images=20)
    produced = 0
    with srv.client(k) as c:
        for n in (1, 2, 3, 4):
            r = c.post(GENERATIONS, json={"model": "paid-64", "prompt": "x", "n": n, "seed": 5})
            assert r.status_code == 200, r.text
            got = len(r.json()["data"])
            assert got == (n + 1) // 2
            produced += got
    assert produced == 6
    assert balance(srv, k) == Decimal("5") - Decimal("0.2") * produced
    assert srv.key_row(k).images_used == produced
    assert run_audit(srv.settings) == []


def test_all_images_failing_is_a_free_500(make_server):
    class NothingEngine(DroppingEngine):
        def drop(self, images):
            return [None] * len(images)

    srv = make_server(models=[PAID], demo=False)
    srv.core.worker.engine = NothingEngine(srv.core.worker.engine)
    k = srv.create_key(credit="1")
    with srv.client(k) as c:
        r = c.post(GENERATIONS, json={"model": "paid-64", "prompt": "x", "n": 2})
    assert r.status_code == 500 and r.json()["error"]["code"] == "generation_failed"
    assert balance(srv, k) == Decimal("1")
    assert run_audit(srv.settings) == []


async def _storm(url: str | list[str], key: str, total: int = 200) -> list[httpx.Response]:
    urls = url if isinstance(url, list) else [url]
    limits = httpx.Limits(max_connections=total, max_keepalive_connections=total)
    clients = [
        httpx.AsyncClient(
            base_url=u, timeout=300, limits=limits, headers={"Authorization": f"Bearer {key}"}
        )
        for u in urls
    ]
    try:
        return await asyncio.gather(
            *(
                clients[i % len(clients)].post(
                    GENERATIONS,
                    json={"model": "paid-64", "prompt": f"p{i}", "n": 1 + i % 4, "seed": i},
                )
                for i in range(total)
            )
        )
    finally:
        for c in clients:
            await c.aclose()


def check_storm(responses: list[httpx.Response], settings, key_row, start_balance: int) -> None:
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    produced = sum(len(r.json()["data"]) for r in ok)
    assert {r.status_code for r in refused} <= {429}, {r.text for r in refused}
    assert {r.json()["error"]["code"] for r in refused} <= {
        "image_cap_reached",
        "insufficient_credit",
    }
    assert produced == 37, produced
    assert key_row.images_used == 37 and key_row.images_reserved == 0
    assert run_audit(settings) == []

    async def user_balance():
        db = Database(settings.db_url)
        try:
            return (await users.get_user(db, key_row.user_id)).balance_minor
        finally:
            await db.dispose()

    final = asyncio.run(user_balance())
    assert final == start_balance - 37 * 2000 and final >= 0


@pytest.mark.slow
def test_200_concurrent_requests_cap_37_credit_50_sqlite(make_server):
    srv = make_server(models=[PAID], demo=False, max_queue=500)
    k = srv.create_key(images=37, credit="10")  # credit for 50 images at 0.2
    responses = asyncio.run(_storm(srv.url, k))
    check_storm(responses, srv.settings, srv.key_row(k), 50 * 2000)
