"""Volcengine HMAC-SHA256 (V4) signatures, signed by the official SDK's own signer: good,
wrong secret, tampered body, stale or future X-Date, replay (in memory and in Redis),
failed signatures counted per IP, and `pixgate keys create --signing`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from unittest import mock

import httpx
import pytest
from volcengine.auth.SignerV4 import SignerV4
from volcengine.base.Request import Request as VolcRequest
from volcengine.Credentials import Credentials
from volcengine.util.Util import Util

from pixgate.accounts.replay import ReplayGuard
from pixgate.api.dialects import volc_signing
from pixgate.errors import PixgateError
from tests.volcengine_client import REQ_KEY, SMALL, business, gateway, make_key, ok, png, sdk

VERSION = "2022-08-31"
PROBE = {"req_key": REQ_KEY, "task_id": "no-such-task"}  # a cheap signed request: not_found


def sign(
    server,
    access_key: str,
    secret_key: str,
    body: dict | str,
    action: str = "CVSync2AsyncGetResult",
    at: datetime | None = None,
    path: str = "/",
) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body of a request signed by the SDK's SignerV4 (optionally as if
    signed at `at`)."""
    host = server.url.removeprefix("http://")
    request = VolcRequest()
    request.set_schema("http")
    request.set_method("POST")
    request.set_host(host)
    request.set_path(path)
    request.set_query({"Action": action, "Version": VERSION})
    request.set_headers({"Host": host, "Content-Type": "application/json"})
    request.set_body(body if isinstance(body, str) else json.dumps(body))
    credentials = Credentials(access_key, secret_key, "cv", "cn-north-1")
    if at is None:
        SignerV4.sign(request, credentials)
    else:
        stamp = at.strftime("%Y%m%dT%H%M%SZ")
        with mock.patch.object(SignerV4, "get_current_format_date", return_value=stamp):
            SignerV4.sign(request, credentials)
    return request.build(), dict(request.headers), request.body.encode()


def send(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(url, headers=headers, content=body, timeout=120)


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared: each test signs with its own keys."""
    return make_module_server(unauthenticated_per_ip_per_minute=1000)


# --- against a server ----------------------------------------------------------------------
def test_signed_requests_good_and_bad(server):
    key = make_key(server, with_secret=True)
    assert ok(send(*sign(server, key.id, key.secret, PROBE)))["status"] == "not_found"
    # on /volcv too, and for CVProcess with images
    url, headers, body = sign(server, key.id, key.secret, SMALL, "CVProcess", path="/volcv")
    assert png(ok(send(url, headers, body))["binary_data_base64"][0]).size == (256, 256)

    meta = gateway(send(*sign(server, key.id, "wrong", PROBE)), 401, "SignatureDoesNotMatch")
    assert meta["Error"]["CodeN"] == 100010 and meta["Action"] == "CVSync2AsyncGetResult"

    url, headers, body = sign(server, key.id, key.secret, PROBE)
    tampered = body.replace(b"no-such-task", b"other-task!!")
    meta = gateway(send(url, headers, tampered), 401, "SignatureDoesNotMatch")
    assert "X-Content-Sha256" in meta["Error"]["Message"]
    # an attacker who also fixes X-Content-Sha256 still breaks the signature
    fixed = {**headers, "X-Content-Sha256": Util.sha256(tampered)}
    gateway(send(url, fixed, tampered), 401, "SignatureDoesNotMatch")
    # the query is signed too
    gateway(
        send(url.replace("GetResult", "SubmitTask"), headers, body), 401, "SignatureDoesNotMatch"
    )

    now = datetime.now(UTC)
    for skew in (timedelta(minutes=-16), timedelta(minutes=16)):
        r = send(*sign(server, key.id, key.secret, PROBE, at=now + skew))
        assert gateway(r, 400, "InvalidTimestamp")["Error"]["CodeN"] == 100006
    assert ok(send(*sign(server, key.id, key.secret, PROBE, at=now - timedelta(minutes=14))))

    url, headers, body = sign(server, key.id, key.secret, {**PROBE, "task_id": "replayed"})
    ok(send(url, headers, body))
    gateway(send(url, headers, body), 401, "RequestReplayed")


def test_signing_credentials_refused(server):
    key = make_key(server, with_secret=True)
    meta = gateway(send(*sign(server, "nobody", key.secret, PROBE)), 401, "InvalidAccessKey")
    assert meta["Error"]["CodeN"] == 100009
    plain = make_key(server)  # no signing secret
    gateway(send(*sign(server, plain.id, "anything", PROBE)), 401, "InvalidAccessKey")
    url, headers, body = sign(server, key.id, key.secret, PROBE)
    for broken in (
        "HMAC-SHA256 Credential=x, Signature=00",
        headers["Authorization"].replace("/request,", "/req,"),
        headers["Authorization"].replace("Signature=", "Signature=zz"),
    ):
        gateway(send(url, {**headers, "Authorization": broken}, body), 400, "InvalidAuthorization")
    no_date = {k: v for k, v in headers.items() if k != "X-Date"}
    meta = gateway(send(url, no_date, body), 400, "InvalidAuthorization")
    assert "X-Date" in meta["Error"]["Message"]
    fenced = make_key(server, with_secret=True, allowed_ips=["10.0.0.0/8"])
    gateway(send(*sign(server, fenced.id, fenced.secret, PROBE)), 403, "AccessDenied")


def test_failed_signatures_count_against_the_ip(make_server):
    server = make_server(unauthenticated_per_ip_per_minute=3, run_workers=False)
    key = make_key(server, with_secret=True)
    for _ in range(3):
        gateway(send(*sign(server, key.id, "wrong", PROBE)), 401, "SignatureDoesNotMatch")
    body = business(send(*sign(server, key.id, key.secret, PROBE)), 429, 50429)
    assert "failed authentication" in body["message"]


@pytest.mark.redis
def test_replay_refused_through_redis(make_server, redis_url):
    server = make_server(
        redis_url=redis_url, unauthenticated_per_ip_per_minute=1000, run_workers=False
    )
    key = make_key(server, with_secret=True)
    url, headers, body = sign(server, key.id, key.secret, PROBE)
    ok(send(url, headers, body))
    gateway(send(url, headers, body), 401, "RequestReplayed")

    async def remembered() -> int:
        from redis.asyncio import Redis

        client = Redis.from_url(redis_url)
        try:
            signature = headers["Authorization"].rsplit("Signature=", 1)[1]
            return await client.ttl(f"pixgate:signature:{key.id}:{signature}")
        finally:
            await client.aclose()

    assert 14 * 60 < asyncio.run(remembered()) <= 15 * 60 + 1


@pytest.mark.slow
def test_keys_create_signing_then_the_sdk(make_settings, tmp_path):
    from tests.conftest import start_server

    data = ["--data-dir", str(tmp_path / "cli-data")]
    env = {**os.environ, "COLUMNS": "200"}

    def cli(*args: str) -> str:
        run = subprocess.run(
            [sys.executable, "-m", "pixgate", *args, *data],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        return run.stdout

    made = json.loads(cli("keys", "create", "--signing", "--json", "--plan", "paid"))
    assert made["access_key"] == made["id"] and len(made["secret_key"]) > 20
    assert made["signing_secret"] == made["secret_key"] and made["key"].startswith("sk-")
    assert "secret_key" in cli("keys", "create", "--secret", "--json")  # the old name works
    cli("credit", "grant", made["user_id"], "5", "--reason", "test")
    server = start_server(make_settings(data_dir=tmp_path / "cli-data"))
    try:
        reply = sdk(server, made["access_key"], made["secret_key"]).cv_process(SMALL)
        assert reply["code"] == 10000, reply
        assert png(reply["data"]["binary_data_base64"][0]).size == (256, 256)
    finally:
        server.stop()


# --- the verifier and the replay guard on their own ----------------------------------------
def test_verifier_matches_the_sdk_signer_on_awkward_requests():
    """Spaces, unicode, reserved characters and repeated keys in the query; a unicode
    body; a host with the default port the SDK leaves out."""
    request = VolcRequest()
    request.set_method("POST")
    request.set_host("example.com:80")
    request.set_path("/a path/ü")
    query = {"Action": "CVProcess", "Version": VERSION, "q": "a b+c/d~é", "empty": ""}
    request.set_query(dict(query))
    request.set_headers({"Host": "example.com:80", "Content-Type": "application/json"})
    request.set_body(json.dumps({"prompt": "千军万马"}, ensure_ascii=False))
    SignerV4.sign(request, Credentials("AK", "SK", "cv", "cn-north-1"))
    headers = {k.lower(): v for k, v in request.headers.items()}
    credential = volc_signing.parse_authorization(headers["authorization"])
    raw_query = str(httpx.QueryParams(query))
    args = dict(
        method="POST",
        path="/a path/ü",
        raw_query=raw_query,
        headers=headers,
        body=request.body.encode(),
    )
    volc_signing.verify(credential, "SK", **args)  # no exception: it matches
    assert volc_signing.canonical_query(raw_query) == Util.norm_query(query)
    with pytest.raises(PixgateError, match="does not match"):
        volc_signing.verify(credential, "other", **args)


def test_replay_guard_forgets_after_its_ttl(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("pixgate.accounts.replay.time.monotonic", lambda: clock[0])
    guard = ReplayGuard()

    async def run() -> list[bool]:
        seen = [await guard.first_use("sig", 60), await guard.first_use("sig", 60)]
        clock[0] += 61
        return [*seen, await guard.first_use("sig", 60), await guard.first_use("other", 5)]

    assert asyncio.run(run()) == [True, False, True, True]
    assert set(guard._seen) == {"sig", "other"}
