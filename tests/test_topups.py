"""Top-ups from the payment system (`POST /admin/topups`): one credit per Idempotency-Key,
409 for a different request under a used key, 400 without the header, admins only; and
paying (a top-up, a redemption) moves a free-plan user to the paid plan, off its limits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import INSTANT, RunningServer, balance, generate

TOPUPS = "/admin/topups"


@pytest.fixture
def srv(make_server) -> RunningServer:
    return make_server(models=[INSTANT])


def _top_up(srv: RunningServer, admin: str, key: str | None, **body):
    headers = {"Idempotency-Key": key} if key is not None else {}
    with srv.client(admin, headers) as c:
        return c.post(TOPUPS, json={"reason": "order 17", **body})


def _user_of(srv: RunningServer, key: str) -> str:
    return srv.key_row(key).user_id


def _audit(srv: RunningServer, admin: str) -> dict:
    with srv.client(admin) as c:
        return c.get("/admin/audit").json()


def test_one_key_credits_once(srv):
    admin, k = srv.create_key(role="admin"), srv.create_key(credit="1")
    user = _user_of(srv, k)
    first = _top_up(srv, admin, "pay-1", user=user, amount="12.50")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["object"] == "topup" and body["replayed"] is False
    assert body["amount"] == "12.5" and body["balance"] == "13.5" and body["user_id"] == user
    again = _top_up(srv, admin, "pay-1", user=user, amount="12.50")
    assert again.status_code == 200, again.text
    assert again.json() == {**body, "replayed": True}
    assert balance(srv, k) == Decimal("13.5")
    with srv.client(admin) as c:
        entries = c.get("/admin/ledger", params={"user": user}).json()["data"]
    assert [e["kind"] for e in entries].count("topup") == 1
    assert _audit(srv, admin) == {"ok": True, "problems": []}


def test_a_used_key_with_another_amount_is_a_conflict(srv):
    admin, k = srv.create_key(role="admin"), srv.create_key()
    user = _user_of(srv, k)
    assert _top_up(srv, admin, "pay-2", user=user, amount="5").status_code == 200
    r = _top_up(srv, admin, "pay-2", user=user, amount="6")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "idempotency_conflict" and "Idempotency-Key" in err["message"]
    other = srv.create_key()
    r = _top_up(srv, admin, "pay-2", user=_user_of(srv, other), amount="5")
    assert r.status_code == 409
    assert balance(srv, other) == 0


def test_refusals_name_the_header_and_the_amount(srv):
    admin, k = srv.create_key(role="admin"), srv.create_key()
    user = _user_of(srv, k)
    r = _top_up(srv, admin, None, user=user, amount="5")
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]["message"]
    r = _top_up(srv, admin, "x" * 201, user=user, amount="5")
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]["message"]
    for amount in ("0", "-1", "1000000001"):
        r = _top_up(srv, admin, f"pay-{amount}", user=user, amount=amount)
        assert r.status_code == 400, (amount, r.text)
        message = r.json()["error"]["message"]
        assert "'amount'" in message and "1000000000" in message, message
    r = _top_up(srv, admin, "pay-nobody", user="nobody", amount="5")
    assert r.status_code == 404
    r = _top_up(srv, k, "pay-3", user=user, amount="5")
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    assert balance(srv, k) == 0


def test_a_top_up_lifts_the_free_plan_limits(srv):
    admin, k = srv.create_key(role="admin"), srv.create_key(plan="free")
    with srv.client(k) as c:
        assert generate(c, model=INSTANT.name).status_code == 200
        assert generate(c, model=INSTANT.name).status_code == 429  # 1 request/s
        r = _top_up(srv, admin, "pay-4", user=_user_of(srv, k), amount="10")
        assert r.status_code == 200 and r.json()["plan"] == "paid", r.text
        statuses = [generate(c, model=INSTANT.name).status_code for _ in range(2)]
    assert statuses == [200, 200]
    assert srv.key_row(k).images_used == 3
    assert _audit(srv, admin)["ok"] is True


def test_a_redemption_moves_to_the_paid_plan(srv):
    admin, free = srv.create_key(role="admin"), srv.create_key(plan="free")
    with srv.client(admin) as c:
        codes = c.post("/admin/codes", json={"count": 1, "value": "3"}).json()["codes"]
    with srv.client(free) as c:
        assert c.post("/v1/redeem", json={"code": codes[0]}).status_code == 200
    with srv.client(admin) as c:
        plans = {u["id"]: u["plan"] for u in c.get("/admin/users").json()["data"]}
    assert plans[_user_of(srv, free)] == "paid"
    assert _audit(srv, admin)["ok"] is True
