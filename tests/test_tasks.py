"""Tasks: any request made asynchronous (202 + task), polled, cancelled with a refund, and
webhooks delivered signed to a real receiver, retried with backoff, across a restart and
by two API nodes sharing one PostgreSQL database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from PIL import Image

from pixgate.queue import webhooks
from tests.conftest import GENERATIONS, SMALL_REQUEST
from tests.test_billing import PAID, balance, run_audit

TASKS = "/v1/tasks"


def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """Verbatim the receiver's check documented in docs/tasks-and-webhooks.md."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    signed = f"{fields['t']}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(fields["t"])) <= tolerance
    return fresh and hmac.compare_digest(expected, fields["v1"])


class Receiver:
    """A webhook receiver on a loopback port: records each POST and answers with the next
    status of `script` (then `default`)."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.default = 200
        self.answer: Callable[[dict, bytes], int] | None = None  # overrides both
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._cond:
                    headers = dict(self.headers.items())
                    if receiver.answer is not None:
                        status = receiver.answer(headers, body)
                    elif receiver.script:
                        status = receiver.script.pop(0)
                    else:
                        status = receiver.default
                    receiver.received.append((headers, body, status))
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 30) -> list[tuple[dict, bytes, int]]:
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.received) >= count, timeout)
            assert ok, f"{len(self.received)} of {count} webhook requests arrived"
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def make_server(make_server):
    """conftest's servers, with loopback allowed for webhooks: the receivers here listen
    on 127.0.0.1, which servers refuse by default (tests/test_ssrf.py)."""

    def make(**overrides):
        return make_server(**{"webhook_allow": ["127.0.0.0/8"], **overrides})

    return make


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared by the tests that make their own keys and receivers and read only their own
    tasks; loopback webhooks allowed as above."""
    return make_module_server(webhook_allow=["127.0.0.0/8"])


def poll(c: httpx.Client, task_id: str, until: Callable[[dict], bool], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = c.get(f"{TASKS}/{task_id}").json()
        if until(task):
            return task
        assert time.monotonic() < deadline, f"task stuck: {task}"
        time.sleep(0.05)


def finished(task: dict) -> bool:
    return task["status"] in ("succeeded", "failed", "cancelled")


def submit(c: httpx.Client, **fields) -> dict:
    r = c.post(GENERATIONS, json={**SMALL_REQUEST, "async": True, **fields})
    assert r.status_code == 202, r.text
    return r.json()


def test_async_request_is_accepted_at_once_then_polled_and_downloaded(server, key):
    with server.client(key) as c:
        r = c.post(GENERATIONS, json={**SMALL_REQUEST, "async": True, "n": 2, "seed": 7})
        assert r.status_code == 202, r.text
        task = r.json()
        assert task["object"] == "task" and task["status"] in ("queued", "running")
        assert 0 <= task["progress"] < 1 and task["error"] is None and task["webhook"] is None
        assert r.headers["location"] == task["links"]["self"]
        assert task["links"]["self"] == f"{server.url}/v1/tasks/{task['id']}"
        assert task["links"]["cancel"].endswith("/cancel") and "data" not in task

        done = poll(c, task["id"], finished)
        assert done["status"] == "succeeded" and done["progress"] == 1.0
        assert done["images_produced"] == 2 and done["seed"] == 7
        assert "cancel" not in done["links"]
        assert len(done["data"]) == 2 and len(done["images"]) == 2
        for item in done["data"]:
            got = httpx.get(item["url"])
            assert got.status_code == 200 and got.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(got.content)).size == (256, 256)
        b64 = c.get(f"{TASKS}/{task['id']}", params={"response_format": "b64_json"}).json()
        raw = base64.b64decode(b64["data"][0]["b64_json"])
        assert Image.open(io.BytesIO(raw)).size == (256, 256)

        listed = c.get(TASKS).json()["data"]
        assert [t["id"] for t in listed] == [task["id"]]
        assert c.get(TASKS, params={"status": "succeeded"}).json()["data"][0]["id"] == task["id"]
        assert c.get(TASKS, params={"status": "cancelled"}).json()["data"] == []
        # /v1/jobs is the same resource under its first name
        assert c.get(f"/v1/jobs/{task['id']}").json()["data"] == done["data"]

        # a request that asked for base64 gets base64 when it polls
        wanted = submit(c, response_format="b64_json")
        got = poll(c, wanted["id"], finished)
        assert "b64_json" in got["data"][0] and "url" in got["images"][0]

        sync = c.post(GENERATIONS, json=SMALL_REQUEST)  # unaffected
        assert sync.status_code == 200 and "url" in sync.json()["data"][0]


def test_progress_while_running_then_cancel_refunds_and_tells_the_webhook(make_server, receiver):
    big = PAID.model_copy(
        update={
            "name": "paid-big",
            "sizes": ["1024x1024"],
            "default_size": "1024x1024",
            "max_steps": 200,
        }
    )
    srv = make_server(models=[big, PAID], demo=False)
    k = srv.create_key(credit="2")
    with srv.client(k) as c:
        r = c.post(
            GENERATIONS,
            json={
                "model": "paid-big",
                "prompt": "x",
                "num_inference_steps": 100,
                "webhook_url": receiver.url,  # implies async
            },
        )
        assert r.status_code == 202, r.text
        task = r.json()
        assert task["webhook"] == {
            "url": receiver.url,
            "status": "pending",
            "attempts": 0,
            "last_error": None,
            "next_attempt_at": None,
        }
        running = poll(c, task["id"], lambda t: t["status"] == "running" and t["progress"] > 0)
        assert 0 < running["progress"] < 1
        assert balance(srv, k) == Decimal("1.8")  # reserved while running

        cancelled = c.post(f"{TASKS}/{task['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert body["status"] == "cancelled" and body["error"]["code"] == "cancelled"
        assert body["error"]["type"] == "invalid_request_error" and body["cost"] == "0"
        again = c.post(f"{TASKS}/{task['id']}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
        assert "cancelled" in again.json()["error"]["message"]
        assert c.get(TASKS, params={"status": "cancelled"}).json()["data"][0]["id"] == task["id"]
        assert c.get(TASKS, params={"status": "failed"}).json()["data"] == []

    assert balance(srv, k) == Decimal("2")  # refunded whole
    headers, raw, _ = receiver.wait_for(1)[0]
    sent = json.loads(raw)
    assert headers["X-Pixgate-Event"] == "task.cancelled"
    assert sent["id"] == task["id"] and sent["status"] == "cancelled"
    assert sent["error"]["code"] == "cancelled"
    assert run_audit(srv.settings) == []


def test_tasks_are_private_to_their_account(server):
    a, b = server.create_key(), server.create_key()
    with server.client(a) as ca, server.client(b) as cb:
        task = submit(ca)
        poll(ca, task["id"], finished)
        assert cb.get(f"{TASKS}/{task['id']}").status_code == 404
        assert cb.get(f"/v1/jobs/{task['id']}").status_code == 404
        assert cb.post(f"{TASKS}/{task['id']}/cancel").status_code == 404
        missing = cb.get(f"{TASKS}/{task['id']}/deliveries")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
        assert cb.get(TASKS).json()["data"] == []
        assert ca.get(f"{TASKS}/nope").status_code == 404


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url", "http or https"),
        ({"webhook_url": "example.com/hook"}, "webhook_url", "http(s) URL"),
        ({"webhook_url": "https:///nohost"}, "webhook_url", "no host"),
        ({"webhook_url": "https://e.com/" + "a" * 2100}, "webhook_url", "2048"),
        ({"webhook_url": "https://e.com:99999/"}, "webhook_url", "http(s) URL"),
        ({"async": False, "webhook_url": "https://e.com/h"}, "async", "webhook_url"),
        ({"webhook_secret": "s" * 20}, "webhook_secret", "webhook_url"),
        ({"webhook_url": "https://e.com/h", "webhook_secret": "short"}, "webhook_secret", "16"),
        ({"async": "maybe"}, "async", "true or false"),
    ],
)
def test_bad_task_fields_are_clear_400s(server, key, fields, param, words):
    with server.client(key) as c:
        r = c.post(GENERATIONS, json={**SMALL_REQUEST, **fields})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"], err
    assert server.key_row(key).images_reserved == 0


def test_webhook_is_delivered_signed(server, key, receiver):
    with server.client(key) as c:
        secret = c.get("/v1/webhooks/secret").json()["secret"]
        assert secret.startswith("whsec_")
        task = submit(c, webhook_url=receiver.url)
        headers, raw, _ = receiver.wait_for(1)[0]
        assert verify(secret, raw, headers["X-Pixgate-Signature"])
        assert not verify(secret, raw + b" ", headers["X-Pixgate-Signature"])
        assert not verify("whsec_other", raw, headers["X-Pixgate-Signature"])
        assert webhooks.verify(secret, raw, headers["X-Pixgate-Signature"])
        sent = json.loads(raw)
        assert headers["X-Pixgate-Event"] == "task.succeeded"
        assert headers["X-Pixgate-Attempt"] == "1"
        assert sent["id"] == task["id"] and sent["object"] == "task"
        assert sent["status"] == "succeeded" and sent["progress"] == 1.0
        assert httpx.get(sent["data"][0]["url"]).status_code == 200

        seen = poll(c, task["id"], lambda t: t["webhook"]["status"] != "pending", timeout=10)
        assert seen["webhook"]["status"] == "delivered" and seen["webhook"]["attempts"] == 1
        tries = c.get(f"{TASKS}/{task['id']}/deliveries").json()["data"]
        assert [(t["attempt"], t["status_code"], t["delivered"]) for t in tries] == [(1, 200, True)]

        # a task's own secret signs its webhook instead of the account's
        own = "my-own-secret-0123456789"
        submit(c, webhook_url=receiver.url, webhook_secret=own)
        headers, raw, _ = receiver.wait_for(2)[1]
        assert verify(own, raw, headers["X-Pixgate-Signature"])
        assert not verify(secret, raw, headers["X-Pixgate-Signature"])


def test_failed_task_carries_the_error_and_tells_the_webhook(make_server, receiver):
    """Offline, a hub model cannot load: the task fails with the error the synchronous
    request would have answered, in OpenAI's error shape, and costs nothing."""
    srv = make_server(demo=False)
    k = srv.create_key(images=5)
    with srv.client(k) as c:
        task = submit(c, model="FLUX.1-schnell", size=None, webhook_url=receiver.url)
        done = poll(c, task["id"], finished)
    assert done["status"] == "failed" and done["cost"] == "0"
    err = done["error"]
    assert err["code"] == "model_unavailable" and err["param"] == "model"
    assert "FLUX.1-schnell" in err["message"] and err["type"] == "server_error"
    headers, raw, _ = receiver.wait_for(1)[0]
    assert headers["X-Pixgate-Event"] == "task.failed"
    assert json.loads(raw)["error"]["code"] == "model_unavailable"
    assert srv.key_row(k).images_reserved == 0


def test_webhook_retried_with_backoff_until_2xx(make_server, receiver):
    srv = make_server(webhook_backoff_seconds=0.2, webhook_poll_seconds=0.2)
    k = srv.create_key()
    receiver.script = [500, 500]
    with srv.client(k) as c:
        task = submit(c, webhook_url=receiver.url)
        got = receiver.wait_for(3)
        assert [status for _, _, status in got] == [500, 500, 200]
        assert [h["X-Pixgate-Attempt"] for h, _, _ in got] == ["1", "2", "3"]
        done = poll(c, task["id"], lambda t: t["webhook"]["status"] == "delivered", timeout=10)
        assert done["webhook"]["attempts"] == 3 and done["webhook"]["last_error"] is None
        tries = c.get(f"{TASKS}/{task['id']}/deliveries").json()["data"]
        assert [(t["status_code"], t["error"]) for t in tries] == [
            (500, "HTTP 500"),
            (500, "HTTP 500"),
            (200, None),
        ]


def test_webhook_gives_up_after_the_last_attempt(make_server, receiver):
    srv = make_server(webhook_backoff_seconds=0.1, webhook_poll_seconds=0.2, webhook_max_attempts=2)
    k = srv.create_key()
    receiver.default = 503
    with srv.client(k) as c:
        task = submit(c, webhook_url=receiver.url)
        done = poll(c, task["id"], lambda t: t["webhook"]["status"] != "pending", timeout=20)
    assert done["webhook"]["status"] == "failed" and done["webhook"]["attempts"] == 2
    assert done["webhook"]["last_error"] == "HTTP 503"
    time.sleep(0.5)
    assert len(receiver.received) == 2


def test_pending_webhook_is_delivered_after_a_restart(make_server, receiver):
    srv = make_server(webhook_backoff_seconds=4, webhook_poll_seconds=0.2)
    k = srv.create_key()
    receiver.script = [500]
    with srv.client(k) as c:
        secret = c.get("/v1/webhooks/secret").json()["secret"]
        task = submit(c, webhook_url=receiver.url)
        receiver.wait_for(1)
    srv.stop()  # the retry is due in 4 s: it is still pending in the database
    assert len(receiver.received) == 1

    again = make_server(port=srv.settings.port, webhook_poll_seconds=0.2)  # same data dir
    headers, raw, status = receiver.wait_for(2, timeout=30)[1]
    assert status == 200 and headers["X-Pixgate-Attempt"] == "2"
    assert verify(secret, raw, headers["X-Pixgate-Signature"])
    assert json.loads(raw)["id"] == task["id"]
    with again.client(k) as c:
        seen = poll(c, task["id"], lambda t: t["webhook"]["status"] == "delivered", timeout=10)
    assert seen["webhook"]["attempts"] == 2


def test_openai_sdk_sync_unaffected_and_async_through_extra_body(server, key):
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    sync = sdk.images.generate(
        model="tiny-sd", prompt="a boat", size="256x256", extra_body={"num_inference_steps": 1}
    )
    assert sync.data and httpx.get(sync.data[0].url).status_code == 200

    accepted = sdk.images.generate(
        model="tiny-sd",
        prompt="a boat",
        size="256x256",
        extra_body={"num_inference_steps": 1, "async": True},
    )
    task = accepted.to_dict()
    assert task["object"] == "task" and task["status"] in ("queued", "running")

    image = io.BytesIO()
    Image.new("RGB", (256, 256), "red").save(image, "PNG")
    edit = sdk.images.edit(
        model="tiny-sd",
        image=("in.png", image.getvalue(), "image/png"),
        prompt="blue",
        size="256x256",
        extra_body={"num_inference_steps": 1, "async": True},
    )
    edit_task = edit.to_dict()
    assert edit_task["object"] == "task" and edit_task["kind"] == "img2img"
    with server.client(key) as c:
        for t in (task, edit_task):
            assert poll(c, t["id"], finished)["status"] == "succeeded"


@pytest.mark.postgres
@pytest.mark.slow
def test_two_api_nodes_never_make_the_same_attempt(make_server, postgres_url, receiver):
    """Two API nodes on one database both look for due webhooks; each attempt is made by
    exactly one of them (every first attempt fails, so retries are contended too)."""
    from pixgate.spec.catalog import TINY_SD

    drawn_at_once = TINY_SD.model_copy(update={"source": "fake:"})  # webhooks are the subject
    nodes = [
        make_server(
            database_url=postgres_url,
            webhook_backoff_seconds=0.2,
            webhook_poll_seconds=0.05,
            models=[drawn_at_once],
        )
        for _ in range(2)
    ]
    k = nodes[0].create_key()
    failed_once: set[str] = set()

    def first_attempt_fails(_headers: dict, body: bytes) -> int:
        task_id = json.loads(body)["id"]
        if task_id in failed_once:
            return 200
        failed_once.add(task_id)
        return 500

    receiver.answer = first_attempt_fails
    ids = []
    for i in range(8):
        with nodes[i % 2].client(k) as c:
            ids.append(submit(c, webhook_url=receiver.url)["id"])
    receiver.wait_for(16, timeout=60)
    time.sleep(1)  # nothing more arrives
    per_task: dict[str, list[str]] = {}
    for headers, raw, _ in receiver.received:
        per_task.setdefault(json.loads(raw)["id"], []).append(headers["X-Pixgate-Attempt"])
    assert {t: sorted(a) for t, a in per_task.items()} == {t: ["1", "2"] for t in ids}
