"""Helpers of the end-to-end relay tests (tests/test_relay*.py): real pixgate servers whose
models are relayed to fake upstreams (tests/upstreams.py) on loopback.

- `fixtures()` gives a test module `upstreams` (fakes started for one test) and
  `module_upstreams` (for the module); both stop their fakes before the servers stop, so a
  `slow` answer never holds a server's shutdown.
- `relayed(name, *channels, **fields)`: a `[[models]]` entry relayed to channels.
- `generate(client, model, **fields)`: an OpenAI-dialect request of a relayed model.
- `until(condition)`: poll until truthy; `router(server)`: its relay lane's router;
  `channels(server, admin_key)`: `GET /admin/channels` by name.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.upstreams import FakeUpstream

PRICE = "0.1"
SIZE = "256x256"
GENERATIONS = "/v1/images/generations"


class Upstreams:
    """Starts fake upstreams on demand; `stop()` stops them all."""

    def __init__(self) -> None:
        self.started: list[FakeUpstream] = []

    def __call__(self, type: str = "openai", response: str = "b64", **kw: Any) -> FakeUpstream:
        up = FakeUpstream(type, response, **kw).start()
        self.started.append(up)
        return up

    def stop(self) -> None:
        with ThreadPoolExecutor(max(1, len(self.started))) as pool:  # ~0.2 s each
            list(pool.map(FakeUpstream.stop, self.started))


def fixtures() -> tuple[Any, Any]:
    """`upstreams, module_upstreams = fixtures()` at a test module's top level."""

    @pytest.fixture
    def upstreams(make_server) -> Iterator[Upstreams]:  # after (so before) the servers
        made = Upstreams()
        yield made
        made.stop()

    @pytest.fixture(scope="module")
    def module_upstreams(make_module_server) -> Iterator[Upstreams]:
        made = Upstreams()
        yield made
        made.stop()

    return upstreams, module_upstreams


def relayed(name: str, *channels: str, price: str = PRICE, **fields: Any) -> dict[str, Any]:
    """A `[[models]]` entry served by `channels` (in that failover order of names)."""
    return {
        "name": name,
        "channels": list(channels),
        "sizes": [SIZE],
        "default_size": SIZE,
        "price": price,
        **fields,
    }


def generate(client: httpx.Client, model: str, **fields: Any) -> httpx.Response:
    return client.post(GENERATIONS, json={"model": model, "prompt": "a lighthouse", **fields})


def until(condition: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Poll `condition` until it returns something truthy (and return that)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.02)


def router(server) -> Any:
    """The router of the server's relay lane (its channels' runtime state)."""
    return server.core.worker.relay.backend().router


def channels(server, admin_key: str) -> dict[str, dict[str, Any]]:
    with server.client(admin_key) as c:
        r = c.get("/admin/channels")
    assert r.status_code == 200, r.text
    return {info["name"]: info for info in r.json()["data"]}


def audit_clean(server) -> None:
    """GET /admin/audit finds nothing: balances equal their ledgers, jobs their charges."""
    admin = server.create_key(role="admin")
    with server.client(admin) as c:
        r = c.get("/admin/audit")
    assert r.status_code == 200 and r.json() == {"ok": True, "problems": []}, r.text


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def own_images(server, body: dict[str, Any]) -> list[Image.Image]:
    """The images of an OpenAI-dialect answer, each a link to the server's own signed
    /files/ URL (never an upstream's) or base64, decoded."""
    import base64

    out = []
    for item in body["data"]:
        if "url" in item:
            assert item["url"].startswith(server.url + "/files/"), item["url"]
            assert "sig=" in item["url"] and "expires=" in item["url"]
            got = httpx.get(item["url"])
            assert got.status_code == 200 and got.headers["content-type"] == "image/png"
            out.append(picture(got.content))
        else:
            out.append(picture(base64.b64decode(item["b64_json"])))
    return out
