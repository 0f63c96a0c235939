"""Fake upstream image APIs for tests: a real HTTP server on a loopback port (Starlette under
uvicorn, in a daemon thread) answering in one channel type's wire format, as the relay
backend's channel modules (pixgate.backends.relay.apis) expect of the real one.

    with FakeUpstream("volcengine") as up:       # or .start() / .stop()
        channel = up.channel("volc-a", timeout_seconds=2)   # a ChannelSpec that reaches it
        ... generate through the channel ...
        up.calls[-1].json["req_key"]; up.calls[-1].authorized; up.max_in_flight
        up.set("busy", seconds=7)                # 429 + Retry-After: 7 from now on
        up.reset()                               # "ok", calls and counters cleared

API (stable: the relay router's tests use it too):

- `FakeUpstream(type, response="b64"|"url", *, api_key=..., access_key=..., secret_key=...)`:
  `type` is a channel type (openai, siliconflow, volcengine, ark, a1111). Credentials
  default to API_KEY / ACCESS_KEY / SECRET_KEY (a1111: none); requests with others get the
  type's 401. Volcengine requests must carry a valid V4 signature by access_key/secret_key
  (checked with pixgate.volc_v4); a bad one gets Volcengine's gateway answer (401,
  `ResponseMetadata.Error.Code` SignatureDoesNotMatch or InvalidAccessKey). For a1111 an
  api_key `user:password` means HTTP Basic auth, any other a Bearer token.
- `.url`: the channel's base_url (with `/v1` for openai and siliconflow).
- `.channel(name="fake", **overrides) -> ChannelSpec` with this fake's URL and credentials.
- `.calls: list[Received]`: every API request (not image downloads), in arrival order:
  method, path, query, headers (lower-case names), body, json, form, files, authorized.
- `.downloads: list[str]`: paths of image downloads (`/files/...`).
- `.set(behaviour, seconds=None)` / `.behaviour`, `.response` ("b64" or "url"; a1111 is
  always b64), `.delay` (slow, default 2 s), `.retry_after` (busy, default 5 s),
  `.url_status` (expiring_url, default 403), `.reject_message` (default REJECT_MESSAGE).
- `.in_flight`, `.max_in_flight`: API requests being answered now / at most at once.

Behaviours: `ok`; `fail` (500, the type's server error); `busy` (429 + Retry-After, the
type's rate-limit answer: Volcengine 50429); `slow` (sleeps `delay`, then ok); `bad_image`
(200, the "images" are bytes that are no image, as base64 or behind URLs); `expiring_url`
(200 with URLs that answer `url_status`); `unauthorized` (the type's 401); `reject` (400 with
`reject_message`; a1111: FastAPI's 422 `detail`); `content` (the type's refusal of the
prompt: OpenAI 400 content_policy_violation, Volcengine code 50412, Ark
InputTextSensitiveContentDetected, SiliconFlow and a1111 451); `empty` (200, no images);
`partial` (multi-image types: one image fewer than asked; one-per-call types, volcengine and
ark: every second call since the behaviour was set fails with 500).

Images are IMAGE_SIZE solid-colour PNGs (`image_png(i)`), URLs served by the same server.
Each type's answer bodies are in tests/upstream_answers.py (IMAGE_SIZE, image_png,
REJECT_MESSAGE and NOT_AN_IMAGE are importable from here too).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pixgate import volc_v4
from pixgate.spec.channels import ChannelSpec
from tests.upstream_answers import (
    IMAGE_SIZE,
    NOT_AN_IMAGE,
    REJECT_MESSAGE,
    error_answer,
    gateway_answer,
    image_png,
    success_answer,
)

API_KEY = "sk-fake-upstream-key"
ACCESS_KEY = "AKFAKEUPSTREAM"
SECRET_KEY = "fake-upstream-secret-key"
BEHAVIOURS = (
    "ok",
    "fail",
    "busy",
    "slow",
    "bad_image",
    "expiring_url",
    "unauthorized",
    "reject",
    "content",
    "empty",
    "partial",
)
__all__ = [
    "ACCESS_KEY",
    "API_KEY",
    "BEHAVIOURS",
    "IMAGE_SIZE",
    "NOT_AN_IMAGE",
    "REJECT_MESSAGE",
    "SECRET_KEY",
    "FakeUpstream",
    "Received",
    "image_png",
]
ONE_PER_CALL = frozenset({"volcengine", "ark"})
API_PATHS = {
    "openai": ("/v1/images/generations", "/v1/images/edits", "/v1/images/variations"),
    "siliconflow": ("/v1/images/generations",),
    "volcengine": ("/",),
    "ark": ("/api/v3/images/generations",),
    "a1111": ("/sdapi/v1/txt2img", "/sdapi/v1/img2img"),
}
_AUTH = re.compile(
    r"HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})"
)


@dataclass
class Received:
    """One API request as the fake upstream saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    authorized: bool = True  # the credentials checked out (True where none are checked)
    refusal: str | None = None  # volcengine: the gateway's Error.Code for a bad signature


class FakeUpstream:
    """One fake upstream of channel type `type`; see the module docstring."""

    def __init__(
        self,
        type: str,
        response: str = "b64",
        *,
        api_key: str | None = API_KEY,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
    ):
        if type not in API_PATHS:
            raise ValueError(f"unknown channel type {type!r}")
        self.type = type
        self.response = response
        self.api_key = None if type == "a1111" and api_key == API_KEY else api_key
        self.access_key, self.secret_key = access_key, secret_key
        self.url = ""
        self.calls: list[Received] = []
        self.downloads: list[str] = []
        self.delay, self.retry_after, self.url_status = 2.0, 5.0, 403
        self.reject_message = REJECT_MESSAGE
        self.behaviour = "ok"
        self.in_flight = self.max_in_flight = 0
        self._answered = 0  # calls answered since the behaviour was set (partial)
        self._files: dict[str, bytes] = {}
        self._generation = 0  # reset() starts a new one; older requests stop counting
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- control ---------------------------------------------------------------------------
    def set(self, behaviour: str, seconds: float | None = None) -> None:
        """Answer with `behaviour` from now on; `seconds` sets the slow delay or the busy
        Retry-After."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {BEHAVIOURS}")
        if behaviour == "expiring_url" and self.type == "a1111":
            raise ValueError("a1111 answers base64 only: it has no URLs to expire")
        if seconds is not None:
            if behaviour == "slow":
                self.delay = seconds
            else:
                self.retry_after = seconds
        self.behaviour, self._answered = behaviour, 0

    def reset(self) -> None:
        """Back to `ok`; calls, downloads and counters cleared. Requests still being answered
        (a `slow` one a client gave up on) are answered at once and no longer counted."""
        self._generation += 1
        self.behaviour, self._answered = "ok", 0
        self.in_flight = self.max_in_flight = 0
        self.calls.clear()
        self.downloads.clear()

    def channel(self, name: str = "fake", **overrides: Any) -> ChannelSpec:
        """A channel of this type reaching this fake with its credentials."""
        values: dict[str, Any] = {"name": name, "type": self.type, "base_url": self.url}
        if self.type == "volcengine":
            values.update(access_key=self.access_key, secret_key=self.secret_key)
        elif self.api_key:
            values["api_key"] = self.api_key
        return ChannelSpec(**{**values, **overrides})

    def start(self) -> FakeUpstream:
        routes = [
            Route("/files/{name}", self._file, methods=["GET"]),
            Route("/{path:path}", self._api, methods=["GET", "POST"]),
        ]
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            Starlette(routes=routes),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="fake-up"
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake upstream did not start")
            time.sleep(0.005)
        root = f"http://127.0.0.1:{port}"
        self.root = root
        self.url = root + ("/v1" if self.type in ("openai", "siliconflow") else "")
        return self

    def stop(self) -> None:
        self._generation += 1  # wakes slow answers
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving ---------------------------------------------------------------------------
    async def _file(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.downloads.append(request.url.path)
        if name.startswith("expired-"):
            return Response(b"Request has expired", self.url_status, media_type="text/plain")
        if name not in self._files:
            return Response(b"no such file", 404, media_type="text/plain")
        return Response(self._files[name], media_type="image/png")

    async def _api(self, request: Request) -> Response:
        received = await self._receive(request)
        if received.path not in API_PATHS[self.type]:
            return JSONResponse({"error": f"no route {received.path}"}, 404)
        self.calls.append(received)
        generation = self._generation
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(received, generation)
        finally:
            if generation == self._generation:
                self.in_flight -= 1

    async def _receive(self, request: Request) -> Received:
        body = await request.body()
        received = Received(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            for name, value in (await request.form()).multi_items():
                if isinstance(value, UploadFile):
                    received.files[name] = await value.read()
                else:
                    received.form[name] = value
        elif body:
            try:
                received.json = json.loads(body)
            except ValueError:
                received.json = None
        if self.type == "volcengine":
            received.refusal = self._signature_error(request, received)
            received.authorized = received.refusal is None
        else:
            received.authorized = self._authorized(received)
        return received

    def _authorized(self, received: Received) -> bool:
        header = received.headers.get("authorization", "")
        if not self.api_key:
            return True
        if self.type == "a1111" and ":" in self.api_key:
            return header == "Basic " + base64.b64encode(self.api_key.encode()).decode()
        return header == f"Bearer {self.api_key}"

    def _signature_error(self, request: Request, received: Received) -> str | None:
        """The gateway's Error.Code when the request is not signed by access_key/secret_key."""
        match = _AUTH.fullmatch(received.headers.get("authorization", ""))
        if match is None:
            return "MissingAuthenticationToken"
        ak, date, region, service, signed, signature = match.groups()
        if ak != self.access_key:
            return "InvalidAccessKey"
        body_sha256 = hashlib.sha256(received.body).hexdigest()
        try:
            names = tuple(signed.split(";"))
            canonical = volc_v4.canonical_request(
                request.method,
                request.url.path,
                request.url.query,
                request.headers,
                names,
                body_sha256,
            )
            x_date = request.headers["x-date"]
        except KeyError:
            return "SignatureDoesNotMatch"
        expected = volc_v4.signature(self.secret_key, date, region, service, x_date, canonical)
        declared = received.headers.get("x-content-sha256", body_sha256)
        if expected != signature or declared != body_sha256:
            return "SignatureDoesNotMatch"
        return None

    async def _answer(self, received: Received, generation: int) -> Response:
        if self.type == "volcengine":
            query = (received.query.get("Action"), received.query.get("Version"))
            if query != ("CVProcess", "2022-08-31"):
                status, body = gateway_answer("InvalidActionOrVersion", 404)
                return JSONResponse(body, status)
        behaviour = self.behaviour
        if not received.authorized:
            behaviour = "unauthorized"
        if behaviour == "slow":
            deadline = time.monotonic() + self.delay
            while time.monotonic() < deadline and generation == self._generation:
                await asyncio.sleep(0.02)
        self._answered += 1
        if behaviour == "partial" and self.type in ONE_PER_CALL and self._answered % 2 == 0:
            behaviour = "fail"
        if behaviour in ("fail", "busy", "unauthorized", "reject", "content"):
            status, body = error_answer(behaviour, self.type, self.reject_message)
            if received.refusal is not None:
                status, body = gateway_answer(received.refusal)
            headers = {"Retry-After": f"{self.retry_after:g}"} if behaviour == "busy" else {}
            return JSONResponse(body, status, headers=headers)
        wanted = self._wanted(received)
        count = {"empty": 0, "partial": max(wanted - 1, 0)}.get(behaviour, wanted)
        if behaviour == "partial" and self.type in ONE_PER_CALL:
            count = wanted
        return JSONResponse(
            success_answer(self.type, [self._image(behaviour, i) for i in range(count)])
        )

    def _wanted(self, received: Received) -> int:
        if self.type in ONE_PER_CALL:
            return 1
        fields = received.json if isinstance(received.json, dict) else received.form
        if self.type == "siliconflow":
            return int(fields.get("batch_size") or 1)
        if self.type == "a1111":
            return int(fields.get("batch_size") or 1) * int(fields.get("n_iter") or 1)
        return int(fields.get("n") or 1)

    def _image(self, behaviour: str, i: int) -> tuple[str, str]:
        """("b64", base64) or ("url", link) of image i."""
        data = NOT_AN_IMAGE if behaviour == "bad_image" else image_png(i)
        if behaviour == "expiring_url":
            return "url", f"{self.root}/files/expired-{uuid.uuid4().hex}.png"
        if self.response == "url" and self.type != "a1111":
            name = f"{uuid.uuid4().hex}.png"
            self._files[name] = data
            return "url", f"{self.root}/files/{name}"
        return "b64", base64.b64encode(data).decode()
