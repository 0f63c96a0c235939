"""Who may do what: key restrictions (403), plan limits and Retry-After (429), the
admin API, redemption codes."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from pixgate.db import utcnow
from pixgate.spec.catalog import TINY_SD
from tests.conftest import GENERATIONS, INSTANT, SMALL_REQUEST, generate
from tests.test_billing import FREE, PAID, balance, run_audit

# Held in flight for ~0.8 s whatever the machine's speed (8 steps of 0.1 s).
HELD = INSTANT.model_copy(update={"name": "held", "source": "fake:delay=0.1,steps=8"})


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared by the tests of one key's restrictions and plan: each makes its own key.
    tiny-sd as in the demo, the seed names for the model allow-list, and `instant` for
    the rate-limit tests, whose second request must land within the first one's second."""
    return make_module_server(models=[TINY_SD, INSTANT])


def _code(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text
    return r.json()["error"]["code"]


def test_expired_key_403(server):
    k = server.create_key(expires_at=utcnow() - timedelta(seconds=1))
    with server.client(k) as c:
        assert _code(generate(c), 403) == "key_expired"
    fresh = server.create_key(expires_at=utcnow() + timedelta(hours=1))
    with server.client(fresh) as c:
        assert generate(c).status_code == 200


def test_ip_allow_list(server):
    k = server.create_key(allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    with server.client(k) as c:
        r = generate(c)
        assert _code(r, 403) == "ip_not_allowed" and "127.0.0.1" in r.json()["error"]["message"]
    ok = server.create_key(allowed_ips=["127.0.0.0/8"])
    with server.client(ok) as c:
        assert generate(c).status_code == 200


def test_model_allow_list(server):
    k = server.create_key(allowed_models=["FLUX.1-schnell"])
    with server.client(k) as c:
        r = generate(c)
        assert _code(r, 403) == "model_not_allowed" and "FLUX.1-schnell" in r.text
        assert generate(c, model="FLUX.1-schnell", size="768x512").status_code == 200


def test_free_plan_one_request_per_second_with_retry_after(server):
    k = server.create_key(plan="free")
    with server.client(k) as c:
        assert generate(c, model=INSTANT.name).status_code == 200
        r = generate(c, model=INSTANT.name)
        assert _code(r, 429) == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 2
        assert "1 per second" in r.json()["error"]["message"]
        time.sleep(1.05)  # the limiter's window is wall-clock time
        assert generate(c, model=INSTANT.name).status_code == 200
    assert server.key_row(k).images_used == 2  # the refused one cost nothing


def test_paid_plan_is_not_rate_limited(server):
    k = server.create_key(plan="paid")
    with server.client(k) as c:
        assert [generate(c).status_code for _ in range(4)] == [200] * 4


def test_plan_day_limit_and_concurrency_from_config(make_server):
    from pixgate.settings import Plan

    plans = {"free": Plan(requests_per_day=2), "tight": Plan(concurrency=1)}
    srv = make_server(plans=plans, default_plan="free", models=[TINY_SD, HELD])
    k = srv.create_key(plan="free")
    with srv.client(k) as c:
        assert generate(c).status_code == 200
        assert generate(c).status_code == 200
        r = generate(c)
        assert _code(r, 429) == "rate_limited" and "per day" in r.json()["error"]["message"]
    tight = srv.create_key(plan="tight")

    async def two_at_once():
        async with httpx.AsyncClient(
            base_url=srv.url, timeout=120, headers={"Authorization": f"Bearer {tight}"}
        ) as c:
            slow = {**SMALL_REQUEST, "model": HELD.name}  # the first is in flight for 0.8 s
            return await asyncio.gather(
                c.post(GENERATIONS, json=slow), c.post(GENERATIONS, json=slow)
            )

    statuses = sorted(r.status_code for r in asyncio.run(two_at_once()))
    assert statuses == [200, 429]


def test_global_limit(make_server):
    srv = make_server(global_requests_per_second=1, models=[INSTANT])
    a, b = srv.create_key(), srv.create_key()
    with srv.client(a) as ca, srv.client(b) as cb:
        assert generate(ca, model=INSTANT.name).status_code == 200
        r = generate(cb, model=INSTANT.name)
        assert _code(r, 429) == "rate_limited" and "server-wide" in r.json()["error"]["message"]


def test_failed_auth_limited_per_ip(make_server):
    srv = make_server(unauthenticated_per_ip_per_minute=3, run_workers=False)
    good = srv.create_key()
    with srv.client("sk-wrong") as bad:
        assert [bad.get("/v1/models").status_code for _ in range(3)] == [401] * 3
        r = bad.get("/v1/models")
        assert _code(r, 429) == "rate_limited" and int(r.headers["retry-after"]) >= 1
    with srv.client(good) as c:  # the same IP is now refused even with a good key
        assert c.get("/v1/models").status_code == 429


def test_disabled_account_403(server):
    import asyncio as aio

    from pixgate.accounts import users
    from pixgate.db import Database

    k = server.create_key()
    user_id = server.key_row(k).user_id

    async def disable():
        db = Database(server.settings.db_url)
        try:
            await users.update_user(db, user_id, enabled=False)
        finally:
            await db.dispose()

    aio.run(disable())
    with server.client(k) as c:
        assert _code(generate(c), 403) == "account_disabled"


def test_admin_api_end_to_end(make_server):
    srv = make_server(models=[PAID, FREE], demo=False, default_model="paid-64")
    root = srv.create_key(role="admin")
    user_key = srv.create_key()
    with srv.client(user_key) as c:
        assert _code(c.get("/admin/users"), 403) == "admin_required"
    with srv.client(root) as c:
        user = c.post("/admin/users", json={"name": "shop", "plan": "paid"}).json()
        assert user["balance"] == "6"  # 30 free images x 0.2
        assert _code(c.post("/admin/users", json={"name": "shop"}), 409) == "user_exists"
        assert _code(c.post("/admin/users", json={"name": "x", "plan": "gold"}), 400)
        r = c.post(
            "/admin/users/shop/credit",
            json={"amount": 4, "kind": "topup", "reason": "paid invoice 17"},
        )
        assert r.json()["balance"] == "10"
        err = c.post(
            "/admin/users/shop/credit", json={"amount": "-11", "kind": "adjust", "reason": "oops"}
        )
        assert _code(err, 400) == "invalid_value" and "below zero" in err.text
        assert (
            _code(
                c.post("/admin/users/shop/credit", json={"amount": "0.00001", "reason": "r"}), 400
            )
            == "invalid_value"
        )
        bad = c.post("/admin/users/shop/credit", json={"amount": "ten", "reason": "r"})
        assert _code(bad, 400) == "invalid_value" and "decimal amount" in bad.text
        made = c.post(
            "/admin/users/shop/keys",
            json={"name": "prod", "images": 5, "prefix": "yc-pic-", "signing_secret": True},
        ).json()
        assert made["key"].startswith("yc-pic-") and len(made["signing_secret"]) > 20
        bad_ip = c.post("/admin/users/shop/keys", json={"allowed_ips": ["300.1.1.1"]})
        assert (
            _code(bad_ip, 400) == "invalid_value"
            and bad_ip.json()["error"]["param"] == "allowed_ips"
        )
        keys = c.get("/admin/keys", params={"user": "shop"}).json()["data"]
        assert keys[0]["has_signing_secret"] is True and made["signing_secret"] not in str(keys)
    with srv.client(made["key"]) as c:
        assert generate(c, model="paid-64", size="64x64", n=2).status_code == 200
    with srv.client(root) as c:
        ledger = c.get("/admin/ledger", params={"user": "shop"}).json()["data"]
        kinds = [e["kind"] for e in ledger]
        assert kinds[:3] == ["charge", "refund", "reserve"] and "topup" in kinds
        assert kinds[-1] == "grant"
        jobs = c.get("/admin/jobs", params={"user": "shop"}).json()["data"]
        assert jobs[0]["n_succeeded"] == 2 and jobs[0]["cost"] == "0.4"
        assert (
            c.patch(f"/admin/keys/{made['id']}", json={"enabled": False}).json()["enabled"] is False
        )
        assert c.get("/admin/audit").json() == {"ok": True, "problems": []}
    with srv.client(made["key"]) as c:
        assert _code(generate(c, model="paid-64", size="64x64"), 403) == "key_disabled"


def test_redemption_codes_single_use_even_concurrently(make_server):
    srv = make_server(models=[PAID], demo=False)
    root = srv.create_key(role="admin")
    with srv.client(root) as c:
        minted = c.post("/admin/codes", json={"count": 3, "value": "2.5"}).json()
        assert len(minted["codes"]) == 3
        assert _code(c.post("/admin/codes", json={"count": 0, "value": "1"}), 400)
        assert _code(c.post("/admin/codes", json={"count": 1, "value": "-1"}), 400)
    first, second, third = minted["codes"]
    k = srv.create_key()
    with srv.client(k) as c:
        r = c.post("/v1/redeem", json={"code": first})
        assert r.json() == {"credited": "2.5", "balance": "2.5", "currency": "CNY"}
        assert _code(c.post("/v1/redeem", json={"code": first}), 409) == "code_redeemed"
        assert (
            _code(c.post("/v1/redeem", json={"code": "PG-NOPE-NOPE-NOPE-NOPE"}), 400)
            == "code_invalid"
        )
        assert c.post("/v1/redeem", json={"code": second.lower()}).status_code == 200

    others = [srv.create_key() for _ in range(8)]

    async def race():
        clients = [
            httpx.AsyncClient(base_url=srv.url, headers={"Authorization": f"Bearer {o}"})
            for o in others
        ]
        try:
            return await asyncio.gather(
                *(c.post("/v1/redeem", json={"code": third}) for c in clients)
            )
        finally:
            for c in clients:
                await c.aclose()

    statuses = sorted(r.status_code for r in asyncio.run(race()))
    assert statuses == [200] + [409] * 7
    assert sum(balance(srv, o) for o in others) == Decimal("2.5")
    assert balance(srv, k) == Decimal("5")
    assert run_audit(srv.settings) == []


def test_usage_endpoint(make_server):
    srv = make_server(models=[PAID, FREE], demo=False)
    k = srv.create_key(credit="2")
    with srv.client(k) as c:
        generate(c, model="paid-64", size="64x64", n=2)
        generate(c, model="free-64", size="64x64")
        by_model = c.get("/v1/usage", params={"group_by": "model"}).json()["data"]
        assert by_model == [
            {"group": "free-64", "requests": 1, "images": 1, "cost": "0"},
            {"group": "paid-64", "requests": 1, "images": 2, "cost": "0.4"},
        ]
        by_day = c.get("/v1/usage").json()["data"]
        assert len(by_day) == 1 and by_day[0]["images"] == 3
        by_key = c.get("/v1/usage", params={"group_by": "key"}).json()["data"]
        assert by_key[0]["group"].startswith("sk-") and "…" in by_key[0]["group"]
        bad = c.get("/v1/usage", params={"group_by": "week"})
        assert _code(bad, 400) == "invalid_value" and "group_by" in bad.text
        bad = c.get("/v1/usage", params={"start": "2026-12-01", "end": "2026-11-01"})
        assert _code(bad, 400) == "invalid_value"


@pytest.mark.redis
def test_rate_limit_shared_between_nodes_through_redis(make_server, redis_url, tmp_path):
    """Two API nodes with one Redis: a free key's 1 request/s holds across both."""
    a = make_server(redis_url=redis_url, models=[INSTANT])  # no draw time in the window
    b = make_server(
        redis_url=redis_url,
        data_dir=tmp_path / "node-b",
        database_url=a.settings.db_url,
        models=[INSTANT],
    )
    k = a.create_key(plan="free")
    with a.client(k) as ca, b.client(k) as cb:
        assert generate(ca, model=INSTANT.name).status_code == 200
        r = generate(cb, model=INSTANT.name)
        assert _code(r, 429) == "rate_limited" and r.headers["retry-after"]
        time.sleep(1.1)  # the limiter's window is wall-clock time
        assert generate(cb, model=INSTANT.name).status_code == 200
