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

PAID = ModelSpec(
    name="paid-64",
    source="builtin:tiny-sd",
    price=Decimal("0.2"),
    sizes=["64x64"],
    default_size="64x64",
    max_steps=4,
    default_steps=1,
)
# The storms test admission and settlement under concurrency, not drawing: same model,
# drawn by the fake backend.
STORM = PAID.model_copy(update={"source": "fake:"})
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
            return await core.identity.create_user("newcomer")
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
        srv.core.identity.api_usage(key_id, srv.core.admission.model("paid-64")),
        srv.server_loop(),
    ).result(10)
    assert usage == {"used_images": 4, "remaining_images": 2}
    assert run_audit(srv.settings) == []


def test_injected_failures_billed_equals_produced(make_server):
    # every second image of each job fails, as a safety filter or a per-image failure would
    srv = make_server(models=[PAID.model_copy(update={"source": "fake:fail_every=2"})], demo=False)
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
    srv = make_server(models=[PAID.model_copy(update={"source": "fake:fail_every=1"})], demo=False)
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
    srv = make_server(models=[STORM], demo=False, max_queue=500)
    k = srv.create_key(images=37, credit="10")  # credit for 50 images at 0.2
    responses = asyncio.run(_storm(srv.url, k))
    check_storm(responses, srv.settings, srv.key_row(k), 50 * 2000)


def test_admin_amounts_and_caps_are_bounded_and_the_books_stay_integers(make_server):
    """The largest allowed credit, code value and image cap work and the audit passes;
    one over is a 400 naming the field and the range. An amount near int64 once made
    SQLite store a float balance, after which the audit crashed."""
    srv = make_server(run_workers=False)
    admin = srv.create_key(role="admin")
    with srv.client(admin) as c:
        created = c.post("/admin/users", json={"name": "whale"}).json()
        user, grant = created["id"], Decimal(created["balance"])  # the free grant

        def credit(amount: str, kind: str = "topup") -> httpx.Response:
            body = {"amount": amount, "kind": kind, "reason": "bounds"}
            return c.post(f"/admin/users/{user}/credit", json=body)

        def refused(r: httpx.Response, field: str) -> None:
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["param"] == field and "1000000000" in error["message"], error

        ok = credit("1000000000")
        assert ok.status_code == 200, ok.text
        assert Decimal(ok.json()["balance"]) == grant + 1_000_000_000
        refused(credit("1000000000.0001"), "amount")
        refused(credit("922337203685477.5807"), "amount")  # int64 max in minor units
        refused(credit("-1000000000.0001", kind="adjust"), "amount")

        minted = c.post("/admin/codes", json={"count": 1, "value": "1000000000"})
        assert minted.status_code == 200, minted.text
        refused(c.post("/admin/codes", json={"count": 1, "value": "1000000000.5"}), "value")

        key = c.post(f"/admin/users/{user}/keys", json={"images": 1_000_000_000})
        assert key.status_code == 200, key.text
        refused(c.post(f"/admin/users/{user}/keys", json={"images": 1_000_000_001}), "images")

    with srv.client(key.json()["key"]) as c:
        redeemed = c.post("/v1/redeem", json={"code": minted.json()["codes"][0]})
        assert redeemed.status_code == 200, redeemed.text
        assert Decimal(redeemed.json()["balance"]) == grant + 2_000_000_000
    with srv.client(admin) as c:
        assert c.get("/admin/audit").json() == {"ok": True, "problems": []}
    assert run_audit(srv.settings) == []


def test_a_credit_may_not_lift_a_balance_past_the_ceiling(make_server):
    from pixgate.money import MAX_AMOUNT, MAX_BALANCE_MINOR, to_minor

    srv = make_server(run_workers=False)
    admin = srv.create_key(role="admin")
    near = MAX_BALANCE_MINOR - to_minor(MAX_AMOUNT) + 1  # one more top-up passes the ceiling

    async def fill() -> None:
        db = Database(srv.settings.db_url)
        try:
            made = await users.create_user(db, users.NewUser("rich", grant_minor=near))
            assert made.balance_minor == near
        finally:
            await db.dispose()

    asyncio.run(fill())
    with srv.client(admin) as c:
        body = {"amount": str(MAX_AMOUNT), "kind": "topup", "reason": "too much"}
        r = c.post("/admin/users/rich/credit", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == "amount", r.text
        assert "largest balance" in r.json()["error"]["message"]
        body["amount"] = "1"
        assert c.post("/admin/users/rich/credit", json=body).status_code == 200
    assert run_audit(srv.settings) == []


def test_audit_finds_each_broken_invariant(make_settings):
    """The audit's aggregate queries report every kind of mismatch, by name."""
    import sqlite3

    from pixgate.accounts import keys
    from pixgate.db import Job, utcnow

    settings = make_settings()

    async def books() -> tuple[str, str]:
        db = Database(settings.db_url)
        try:
            await db.migrate()
            alice = await users.create_user(db, users.NewUser("alice", grant_minor=100))
            await users.create_user(db, users.NewUser("bob", grant_minor=5))
            key = await keys.create_key(db, alice.id, keys.KeySpec(image_cap=1))
            async with db.write() as s:
                common = dict(model="m", kind="txt2img", request={}, seed=1, key_id=key.id)
                s.add(
                    Job(
                        id="j-cost",
                        user_id=alice.id,
                        status="succeeded",
                        n=2,
                        n_succeeded=2,
                        price_minor=10,
                        cost_minor=5,
                        created_at=utcnow(),
                        **common,
                    )
                )
                s.add(
                    Job(
                        id="j-run",
                        user_id=alice.id,
                        status="running",
                        n=1,
                        cap_reserved=True,
                        created_at=utcnow(),
                        **common,
                    )
                )
            async with db.write() as s:
                from pixgate.accounts import billing

                await billing.post(s, alice.id, -7, "charge", job_id="j-run")
                await billing.post(s, alice.id, -3, "reserve", job_id="j-cost")
            assert await audit(db) != []
            return alice.id, key.display
        finally:
            await db.dispose()

    _, display = asyncio.run(books())
    con = sqlite3.connect(settings.data_dir / "pixgate.db")
    con.execute("UPDATE users SET balance_minor = -1 WHERE name = 'bob'")
    con.execute("UPDATE users SET balance_minor = 1e19 WHERE name = 'alice'")  # a float
    con.commit()
    con.close()
    problems = "\n".join(run_audit(settings))
    for words in (
        "users.balance_minor of alice is not an integer",
        "user alice: balance 1e+19 != ledger sum 90",
        "user bob: balance -1 != ledger sum 5",
        "user bob: negative balance -1",
        "job j-cost: cost 5 != 2 images x 10",
        "job j-cost: charged 0 != cost 5",
        "job j-cost: reservation not fully returned (-3)",
        "job j-run: charged while still running",
        f"key {display}: images_used 0 != 2 produced by its jobs",
        f"key {display}: images_reserved 0 != 1 in unfinished jobs",
    ):
        assert words in problems, problems


@pytest.mark.slow
def test_cli_refuses_amounts_and_caps_over_the_bound(tmp_path):
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "pixgate", *args, "--data-dir", str(tmp_path)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert cli("users", "create", "bob").returncode == 0
    for args, field in (
        (("credit", "grant", "bob", "1000000000.0001", "--reason", "x"), "'amount'"),
        (("codes", "mint", "--count", "1", "--value", "2000000000"), "'value'"),
        (("keys", "create", "--user", "bob", "--images", "1000000001"), "'images'"),
    ):
        refused = cli(*args)
        assert refused.returncode == 2 and field in refused.stderr, refused.stderr
        assert "1000000000" in refused.stderr and "Traceback" not in refused.stderr
    assert cli("credit", "grant", "bob", "1000000000", "--reason", "x").returncode == 0
    assert "audit clean" in cli("audit").stdout
