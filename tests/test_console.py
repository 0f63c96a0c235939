"""The web console over HTTP (httpx against a real server): sign-up with the free grant,
keys made in the console working on the API, codes, the ledger's CSV, CSRF, the login
rate limit, other users' ids, logout everywhere and the security headers."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
import pytest

from tests.conftest import GENERATIONS, INSTANT

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text[:500]
    return found.group(1)


def browser(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=60, headers={"Accept-Language": "en"})


def signup(client: httpx.Client, name: str | None = None, password: str = "correct horse 1"):
    name = name or f"user{uuid.uuid4().hex[:8]}"
    token = csrf_of(client.get("/console/signup"))
    r = client.post(
        "/console/signup",
        data={"csrf": token, "name": name, "email": f"{name}@example.com", "password": password},
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/", r.text[:500]
    return name


def post(client: httpx.Client, path: str, page: str, **data) -> httpx.Response:
    return client.post(path, data={"csrf": csrf_of(client.get(page)), **data})


def create_key(client: httpx.Client, **fields) -> str:
    r = post(client, "/console/keys", "/console/keys", name="ci", **fields)
    assert r.status_code == 200, r.text[:500]
    return re.search(r'<code id="new-key">([^<]+)</code>', r.text).group(1)


@pytest.fixture
def server(make_server):
    return make_server(models=[INSTANT], demo=False, free_grant="5")


def test_signup_free_grant_and_a_console_key_works_on_the_api(server):
    with browser(server) as c:
        name = signup(c)
        dash = c.get("/console/")
        assert dash.status_code == 200 and name in dash.text
        assert '<dd id="free-grant">5 CNY</dd>' in dash.text
        assert '<dd id="balance">5 CNY</dd>' in dash.text
        key = create_key(c, image_cap="3")
        keys_page = c.get("/console/keys")
        assert key not in keys_page.text  # shown once
        assert "0 / 3" in keys_page.text
    with server.client(key) as api:
        r = api.post(GENERATIONS, json={"model": "instant", "prompt": "a cat", "n": 1})
        assert r.status_code == 200, r.text
    with browser(server) as c:  # a fresh login sees the task it made
        token = csrf_of(c.get("/console/login"))
        r = c.post(
            "/console/login", data={"csrf": token, "login": name, "password": "correct horse 1"}
        )
        assert r.status_code == 303
        dash = c.get("/console/")
        assert '<dd id="images-used">1</dd>' in dash.text
        task_id = re.search(r'href="/console/tasks/([0-9a-f]+)"', dash.text).group(1)
        task = c.get(f"/console/tasks/{task_id}")
        assert task.status_code == 200 and "a cat" in task.text and "<img" in task.text


def test_redeem_and_ledger_csv(server):
    _, codes = asyncio.run_coroutine_threadsafe(
        server.core.admin.mint_codes(1, 20_000, "test"), server.server_loop()
    ).result()
    with browser(server) as c:
        signup(c)
        r = post(c, "/console/redeem", "/console/redeem", code=codes[0])
        assert r.status_code == 200 and "2 CNY added; the balance is 7 CNY" in r.text
        again = post(c, "/console/redeem", "/console/redeem", code=codes[0])
        assert again.status_code == 409 and "already been used" in again.text
        csv = c.get("/console/ledger.csv")
        assert csv.headers["content-type"].startswith("text/csv")
        rows = csv.text.strip().splitlines()
        assert rows[0].startswith("id,time_utc,kind,amount_CNY")
        kinds = sorted(row.split(",")[2] for row in rows[1:])
        assert kinds == ["grant", "redemption"]


def test_csrf_is_checked_on_every_post(server):
    with browser(server) as c:
        signup(c)
        for path in ("/console/keys", "/console/redeem", "/console/logout", "/console/password"):
            r = c.post(path, data={"name": "x", "code": "PG-XXXX"})
            assert r.status_code == 403, path
            assert "CSRF check failed" in r.text
            r = c.post(path, data={"csrf": "wrong"})
            assert r.status_code == 403
        assert c.get("/console/").status_code == 200  # still logged in: nothing happened
    with browser(server) as anonymous:  # the login form has one too (double submit)
        r = anonymous.post("/console/login", data={"login": "a", "password": "b"})
        assert r.status_code == 403


def test_login_is_rate_limited_and_says_nothing_about_the_account(make_server):
    server = make_server(models=[INSTANT], demo=False, console_login_per_account_per_minute=3)
    with browser(server) as c:
        name = signup(c, password="right password")
    with browser(server) as c:
        token = csrf_of(c.get("/console/login"))
        wrong = [
            c.post("/console/login", data={"csrf": token, "login": login, "password": "bad"})
            for login in (name, "nobody-at-all")
        ]
        assert [r.status_code for r in wrong] == [401, 401]
        assert all("The user name or password is wrong." in r.text for r in wrong)
        for _ in range(2):
            c.post("/console/login", data={"csrf": token, "login": name, "password": "bad"})
        r = c.post(
            "/console/login", data={"csrf": token, "login": name, "password": "right password"}
        )
        assert r.status_code == 429 and "Retry-After" in r.headers
        assert "failed logins per account" in r.text


def test_another_users_key_and_task_are_refused(server):
    with browser(server) as alice, browser(server) as bob:
        signup(alice)
        signup(bob)
        create_key(alice)
        key_id = re.search(r'id="key-([0-9a-f]+)"', alice.get("/console/keys").text).group(1)
        r = post(bob, f"/console/keys/{key_id}/disable", "/console/keys")
        assert r.status_code == 404
        row = alice.get("/console/keys").text.split(f'id="key-{key_id}"')[1].split("</tr>")[0]
        assert "<td>active</td>" in row  # bob's attempt changed nothing
        assert bob.get("/console/tasks/doesnotexist").status_code == 404


def test_logout_everywhere_ends_old_sessions(server):
    with browser(server) as first:
        name = signup(first)
        old_cookie = first.cookies.get("pixgate_session")
        with browser(server) as second:
            token = csrf_of(second.get("/console/login"))
            second.post(
                "/console/login",
                data={"csrf": token, "login": f"{name}@example.com", "password": "correct horse 1"},
            )
            assert second.get("/console/").status_code == 200
            r = post(second, "/console/logout-everywhere", "/console/password")
            assert r.status_code == 303 and r.headers["location"] == "/console/login"
        r = first.get("/console/")
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
    with httpx.Client(base_url=server.url, cookies={"pixgate_session": old_cookie}) as replay:
        assert replay.get("/console/").status_code == 303


def test_password_change_ends_the_other_sessions(server):
    with browser(server) as first, browser(server) as second:
        name = signup(first)
        token = csrf_of(second.get("/console/login"))
        second.post(
            "/console/login", data={"csrf": token, "login": name, "password": "correct horse 1"}
        )
        r = post(
            first,
            "/console/password",
            "/console/password",
            current="correct horse 1",
            new="a new secret 2",
            repeat="a new secret 2",
        )
        assert r.status_code == 200 and "Password changed" in r.text
        assert first.get("/console/").status_code == 200
        assert second.get("/console/").status_code == 303


def test_security_headers_cookies_and_languages(server):
    with browser(server) as c:
        page = c.get("/console/login")
        for r in (page, c.get("/console/static/console.css")):
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "script-src 'self'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "same-origin"
        assert "<script>" not in page.text  # no inline script
        assert "httponly" in page.headers["set-cookie"].lower()
        assert "samesite=lax" in page.headers["set-cookie"].lower()
        signup(c)
        zh = c.get("/console/lang/zh?next=/console/keys")
        assert zh.status_code == 303 and zh.headers["location"] == "/console/keys"
        assert "API 密钥" in c.get("/console/keys").text
        evil = c.get("/console/lang/en?next=https://evil.example/")
        assert evil.headers["location"] == "/console/"
    with httpx.Client(base_url=server.url, headers={"Accept-Language": "zh-CN,zh;q=0.9"}) as c:
        assert "登录" in c.get("/console/login").text
