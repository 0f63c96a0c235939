"""Clients of the Volcengine dialect for tests: keys with signing secrets, the official
SDK pointed at a local server, plain HTTP, and checks of Volcengine's response shapes."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import uuid
from decimal import Decimal

import httpx
from PIL import Image
from volcengine.visual.VisualService import VisualService

from pixgate.accounts import keys, users
from pixgate.accounts.secrets import SecretBox
from pixgate.db import Database
from pixgate.money import to_minor

REQ_KEY = "high_aes_general_v21_L"
CV = "/volcv?Action=CVProcess&Version=2022-08-31"
SUBMIT = "/?Action=CVSync2AsyncSubmitTask&Version=2022-08-31"
GET = "/?Action=CVSync2AsyncGetResult&Version=2022-08-31"
SMALL = {
    "req_key": REQ_KEY,
    "prompt": "a lighthouse",
    "width": 256,
    "height": 256,
    "ddim_steps": 2,
    "use_sr": False,
    "return_url": False,
}


def make_key(server, plan: str = "paid", credit: str = "100", **spec) -> keys.CreatedKey:
    """A key with a signing secret for a new user with `credit` (currency)."""

    async def make() -> keys.CreatedKey:
        settings = server.settings
        db = Database(settings.db_url)
        try:
            user = await users.create_user(
                db,
                users.NewUser(f"v-{uuid.uuid4().hex[:8]}", "user", plan, to_minor(Decimal(credit))),
            )
            box = SecretBox.for_data_dir(settings.data_dir, settings.master_key)
            return await keys.create_key(db, user.id, keys.KeySpec(**spec), box)
        finally:
            await db.dispose()

    return asyncio.run(make())


def sdk(server, access_key: str, secret_key: str) -> VisualService:
    """The official SDK pointed at the local server (plain http, host:port)."""
    service = VisualService()
    service.set_ak(access_key)
    service.set_sk(secret_key)
    service.set_host(server.url.removeprefix("http://"))
    service.set_scheme("http")
    service.set_socket_timeout(120)
    return service


def post(server, path: str, body, key: str | None = None, **headers) -> httpx.Response:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(server.url + path, content=content, headers=headers, timeout=120)


def png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image.convert("RGB")


def ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == body["status"] == 10000 and body["message"] == "Success"
    assert body["request_id"] == r.headers["x-request-id"]
    assert re.fullmatch(r"\d+(\.\d+)?(s|ms|µs)", body["time_elapsed"])
    return body["data"]


def gateway(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    meta = r.json()["ResponseMetadata"]
    assert meta["Error"]["Code"] == code, meta
    assert meta["RequestId"] == r.headers["x-request-id"]
    assert {"Action", "Version", "Service", "Region"} <= set(meta)
    return meta


def business(r: httpx.Response, status: int, code: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == body["status"] == code, body
    assert "Traceback" not in r.text and body["request_id"] == r.headers["x-request-id"]
    return body
