"""The two small servers `bench/relay.py` runs under uvicorn (each in its own process).

- `fake_upstream`: an OpenAI-style image API that answers `POST /v1/images/generations`
  at once with the same 64x64 PNG as `b64_json` (no work per request beyond reading the
  body), so the relays are what is measured.
- `bare_forwarder`: the floor for a relay: forwards the request body to the upstream named
  by `RELAY_BENCH_UPSTREAM` with one shared `httpx.AsyncClient` and returns its answer.
  No auth, no accounting, no validation.

    python -m uvicorn relay_apps:fake_upstream --app-dir bench --port 9101
    RELAY_BENCH_UPSTREAM=http://127.0.0.1:9101/v1 \
        python -m uvicorn relay_apps:bare_forwarder --app-dir bench --port 9102
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

IMAGE_SIZE = 64


def _png() -> bytes:
    """A 64x64 RGB gradient, a few hundred bytes as PNG."""
    from PIL import Image

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    image.putdata(
        [(4 * x, 4 * y, 128) for y in range(IMAGE_SIZE) for x in range(IMAGE_SIZE)]  # type: ignore[arg-type]
    )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


_B64 = base64.b64encode(_png()).decode()


async def _generations(request: Request) -> Response:
    body = await request.body()
    try:
        n = int(json.loads(body).get("n") or 1)
    except (ValueError, AttributeError, TypeError):
        n = 1
    answer = {"created": int(time.time()), "data": [{"b64_json": _B64}] * max(1, min(n, 10))}
    return Response(json.dumps(answer), media_type="application/json")


@asynccontextmanager
async def _client(app: Starlette):
    async with httpx.AsyncClient(timeout=60) as client:
        app.state.client = client
        yield


async def _forward(request: Request) -> Response:
    upstream = os.environ["RELAY_BENCH_UPSTREAM"].rstrip("/")
    r = await request.app.state.client.post(
        upstream + "/images/generations",
        content=await request.body(),
        headers={"content-type": request.headers.get("content-type", "application/json")},
    )
    return Response(r.content, status_code=r.status_code, media_type=r.headers.get("content-type"))


async def _ready(request: Request) -> Response:
    return Response("ok")


fake_upstream = Starlette(
    routes=[
        Route("/v1/images/generations", _generations, methods=["POST"]),
        Route("/readyz", _ready),
    ]
)


bare_forwarder = Starlette(
    routes=[
        Route("/v1/images/generations", _forward, methods=["POST"]),
        Route("/readyz", _ready),
    ],
    lifespan=_client,
)
