"""Every error status of the OpenAI dialect: clear message naming the field, OpenAI's
error object, nothing charged."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

GEN = "/v1/images/generations"
OK = {"model": "tiny-sd", "prompt": "a cat", "size": "256x256", "num_inference_steps": 1}


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared: each test makes its own key and checks only that key's counters."""
    return make_module_server()


def _err(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in r.text
    return body["error"]


@pytest.mark.parametrize(
    ("patch", "param", "words"),
    [
        ({"num_inference_steps": 0}, "num_inference_steps", "between 1 and 100"),
        ({"num_inference_steps": 101}, "num_inference_steps", "between 1 and 100"),
        ({"guidance_scale": 20.5}, "guidance_scale", "between 0 and 20"),
        ({"seed": 10_000_000_000}, "seed", "between 0 and 9999999999"),
        ({"seed": -1}, "seed", "between 0 and 9999999999"),
        ({"batch_size": 5}, "batch_size", "between 1 and 4"),
        ({"n": 11}, "n", "between 1 and 10"),
        ({"n": 5}, "n", "between 1 and 4 for model tiny-sd"),
        ({"size": "100x100"}, "size", "allowed sizes"),
        ({"image_size": "1024x1024", "size": "512x512"}, "size", "disagree"),
        ({"n": 2, "batch_size": 3}, "n", "disagree"),
        ({"response_format": "gif"}, "response_format", "'url' or 'b64_json'"),
        ({"output_format": "bmp"}, "output_format", "'png', 'jpeg' or 'webp'"),
        ({"prompt": ""}, "prompt", "1 to 4000 characters"),
        ({"prompt": "x" * 4001}, "prompt", "1 to 4000 characters"),
        ({"num_inference_steps": "many"}, "num_inference_steps", "integer"),
        ({"stream": True}, "stream", "Unknown parameter"),
    ],
)
def test_400_names_field_and_range(server, key, patch, param, words):
    with server.client(key) as c:
        err = _err(c.post(GEN, json={**OK, **patch}), 400)
    assert err["param"] == param
    assert err["type"] == "invalid_request_error"
    assert words in err["message"]
    row = server.key_row(key)
    assert row.images_used == 0 and row.images_reserved == 0


def test_400_missing_prompt_and_bad_json(server, key):
    with server.client(key) as c:
        err = _err(c.post(GEN, json={"model": "tiny-sd"}), 400)
        assert err["param"] == "prompt" and err["code"] == "missing_field"
        err = _err(
            c.post(GEN, content=b"{not json", headers={"content-type": "application/json"}), 400
        )
        assert err["code"] == "invalid_json"
        err = _err(c.post(GEN, json=[1, 2]), 400)
        assert "JSON object" in err["message"]
        from pixgate.api.dialects.openai import MAX_JSON_WITH_IMAGE

        err = _err(c.post(GEN, json={**OK, "prompt": "x" * (MAX_JSON_WITH_IMAGE + 1)}), 413)
        assert err["code"] == "body_too_large" and str(MAX_JSON_WITH_IMAGE) in err["message"]


def test_400_in_chinese(server, key):
    with server.client(key, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}) as c:
        err = _err(c.post(GEN, json={**OK, "num_inference_steps": 0}), 400)
    assert "1 到 100" in err["message"]


def test_401_missing_and_invalid_key(server):
    with server.client() as c:
        err = _err(c.post(GEN, json=OK), 401)
        assert err["code"] == "missing_api_key"
    with server.client("sk-not-a-real-key") as c:
        err = _err(c.post(GEN, json=OK), 401)
        assert err["code"] == "invalid_api_key"
        _err(c.get("/v1/models"), 401)


def test_403_revoked_key(server):
    import asyncio

    from pixgate.accounts import keys
    from pixgate.db import Database

    k = server.create_key()

    async def revoke():
        db = Database(server.settings.db_url)
        try:
            return await keys.revoke_key(db, k)
        finally:
            await db.dispose()

    assert asyncio.run(revoke()) is not None
    with server.client(k) as c:
        err = _err(c.post(GEN, json=OK), 403)
    assert err["code"] == "key_disabled"


def test_404_unknown_model(server, key):
    with server.client(key) as c:
        err = _err(c.post(GEN, json={**OK, "model": "dall-e-9"}), 404)
    assert err["param"] == "model" and "dall-e-9" in err["message"] and "tiny-sd" in err["message"]


def test_429_image_cap(server):
    k = server.create_key(images=3)
    with server.client(k) as c:
        assert c.post(GEN, json={**OK, "n": 2}).status_code == 200
        err = _err(c.post(GEN, json={**OK, "n": 2}), 429)
        assert err["code"] == "image_cap_reached" and "2 of 3" in err["message"]
        assert c.post(GEN, json={**OK, "n": 1}).status_code == 200
        _err(c.post(GEN, json=OK), 429)
    row = server.key_row(k)
    assert row.images_used == 3 and row.images_reserved == 0


def test_503_queue_full_with_retry_after_then_504(make_server):
    """An API-only node (no worker) with a queue of one: the second request is refused at
    once; the first times out with 504; neither is charged."""
    srv = make_server(run_workers=False, max_queue=1, generation_timeout_seconds=3)
    k = srv.create_key(images=10)
    first: dict = {}

    def send_first():
        with srv.client(k) as c:
            first["r"] = c.post(GEN, json=OK)

    t = threading.Thread(target=send_first)
    t.start()
    with srv.client(k) as c:
        deadline = time.monotonic() + 10
        while not c.get("/v1/jobs").json()["data"]:  # until the first job is queued
            assert time.monotonic() < deadline, "the first request was not queued"
            time.sleep(0.02)
        r = c.post(GEN, json=OK)
    err = _err(r, 503)
    assert err["code"] == "queue_full" and r.headers["retry-after"] == "5"
    t.join()
    err = _err(first["r"], 504)
    assert err["code"] == "generation_timeout" and "3 seconds" in err["message"]
    row = srv.key_row(k)
    assert row.images_used == 0 and row.images_reserved == 0


def test_504_running_generation_is_stopped_and_free(make_server):
    # The fake backend takes 0.05 s a step whatever the machine's load, so the long job
    # (100 steps) outlives the timeout and the next one fits in it only if the worker
    # really stops the long one at its next step.
    from pixgate.spec.catalog import TINY_SD

    slow = TINY_SD.model_copy(update={"source": "fake:delay=0.05"})
    srv = make_server(generation_timeout_seconds=1.5, models=[slow], default_model="tiny-sd")
    k = srv.create_key(images=10)
    with srv.client(k) as c:
        r = c.post(GEN, json={**OK, "size": "1024x1024", "num_inference_steps": 100})
        err = _err(r, 504)
    assert err["code"] == "generation_timeout"
    # the worker stops at its next step and is free again quickly
    with srv.client(k) as c:
        assert c.post(GEN, json=OK).status_code == 200
    row = srv.key_row(k)
    assert row.images_used == 1 and row.images_reserved == 0


def test_every_response_has_request_id(server, key):
    with server.client(key) as c:
        assert c.get("/healthz").headers["x-request-id"]
        r = c.post(GEN, json={**OK, "n": 99})
        assert len(r.headers["x-request-id"]) == 32
        r = c.get("/healthz", headers={"X-Request-ID": "trace-abc.1"})
        assert r.headers["x-request-id"] == "trace-abc.1"
        r = c.get("/nope")
        assert r.status_code == 404 and r.headers["x-request-id"]
