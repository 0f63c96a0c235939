"""The aichat image-to-image task dialect (seed 003): the seed's multipart request and
task query against a live server, polling through to downloadable images, md5 request
signing, the mapping of every params field, errors in the dialect's task-status shape,
free-plan limits and billing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from decimal import Decimal
from urllib.parse import urlencode

import httpx
import pytest
import requests

from pixgate.settings import Plan, default_plans
from pixgate.spec.catalog import LoraSpec, ModelSpec, Style, stable_id
from tests.conftest import balance
from tests.images import fetch_image, gradient_png

SUBMIT = "/api/image2image"
QUERY = "/api/v1/draw/query"

# A small model so tasks run in a fraction of a second on a CPU: 1:1, 3:4 and 9:16 sizes.
TINY = ModelSpec(
    name="tiny-256",
    source="builtin:tiny-sd",
    sizes=["256x256", "192x256", "144x256"],
    default_size="256x256",
    price=Decimal("0.1"),
)
# Style ids are the operator's own: this one carries the seed's example id verbatim.
SEED_STYLE = Style(id="fc1be0561c11fe7019f4424f5e7b2c85", name="Anime", template="anime, {prompt}")
INK = Style(id="ink", name="Ink", template="ink painting of {prompt}", negative_prompt="photo")

# The seed's example params, verbatim (model_id aside: ids come from this catalog).
SEED_PARAMS = """{    "number": 4,    "hire": 0,    "seed": -1,    "steps": 20,    "cfg_scale": 7,    "lora_scale": 75,    "denoising_strength": 70,    "as_prompt": true,    "prompt": "",    "size_id": "1:1",    "model_id": "b49012a9071407209652d332517a182e",    "style_id": "fc1be0561c11fe7019f4424f5e7b2c85",    "simper": "DPM++ 2M Karras",    "negative_prompt": "easynegative, (worst quality:1.3), (low quality:1), (normal quality:1.4), lowres,skin spots, acnes, skin blemishes, age spot, glan, extra fingers, fewer fingers, strange fingers, bad hand, bad anatomy, fused fingers, missing leg, mutated hand, malformed limbs, missing feet,multiple legs,men,boy,logo, loli,3d,extra hands,extra foots"}"""  # noqa: E501
FAST = {"number": 1, "steps": 2, "size_id": "1:1", "prompt": "a cat"}


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared by the tests that make their own keys and read only their own tasks."""
    return make_module_server(models=[TINY], default_model="tiny-256", styles=[SEED_STYLE, INK])


@pytest.fixture
def key(server) -> str:
    return server.create_key(credit="10")


def submit(
    srv,
    key: str | None,
    params: dict | str | None = None,
    image: bytes | None = None,
    headers: dict | None = None,
    path: str = SUBMIT,
    query: str | None = None,
) -> httpx.Response:
    files = {"image": ("1.png", gradient_png() if image is None else image, "image/png")}
    data = (
        {}
        if params is None
        else {"params": params if isinstance(params, str) else json.dumps(params)}
    )
    url = (
        srv.url
        + path
        + "?"
        + (query if query is not None else urlencode({"key": key} if key else {}))
    )
    return httpx.post(url, files=files, data=data, headers=headers or {}, timeout=60)


def query(srv, key: str, task_id, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        srv.url + QUERY,
        json={"task_id": task_id},
        headers={"apikey": key, **(headers or {})},
        timeout=60,
    )


def poll(srv, key: str, task_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = query(srv, key, task_id)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["code"] == 200 and body["msg"] == "success"
        data = body["data"]
        assert 0 <= data["progress"] <= 100
        if data["status"] not in ("queued", "running"):
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.1)


def stored_request(srv, task_id: str) -> dict:
    future = asyncio.run_coroutine_threadsafe(srv.core.queue.get(task_id), srv.server_loop())
    return future.result(10).request


def test_seed_example_submit_and_query(server, key):
    """The seed's request as its Python users send it (requests, multipart, key in the
    query and the apikey header; the seed's double-slash address), then its task query,
    polled until the images are there; they are charged once, however often polled."""
    params = SEED_PARAMS.replace("b49012a9071407209652d332517a182e", stable_id("tiny-256"))
    url = server.url + "//api/image2image?key=" + key
    response = requests.post(
        url,
        headers={"apikey": key},
        files={"image": ("1.png", gradient_png(), "image/png")},
        data={"params": params},
    )
    result = response.json()
    assert response.status_code == 200, result
    assert result["code"] == 200 and result["msg"] == "success"
    task_id = result["task_id"]
    assert result["data"]["task_id"] == task_id and result["data"]["number"] == 4
    assert result["data"]["status"] in ("queued", "running", "succeeded")

    done = poll(server, key, task_id)
    assert done["status"] == "succeeded" and done["progress"] == 100 and done["error"] is None
    assert done["number"] == done["images_generated"] == len(done["images"]) == 4
    seeds = [i["seed"] for i in done["images"]]
    assert seeds == [done["seed"] + i for i in range(4)]
    for item in done["images"]:
        image = fetch_image(item["url"])
        assert image.size == (item["width"], item["height"]) == (256, 256)
    for _ in range(2):  # polling again changes nothing
        assert query(server, key, task_id).json()["data"]["images_generated"] == 4
    stored = stored_request(server, task_id)
    assert stored["prompt_enhancement"] is True and stored["original_prompt"] == "anime, "
    assert stored["prompt"].startswith("anime, ") and stored["rewriter"] == "offline"
    assert done["revised_prompt"] == stored["prompt"] and done["rewriter"] == "offline"
    assert stored["negative_prompt"].startswith("easynegative, (worst quality:1.3)")
    assert (stored["kind"], stored["strength"], stored["steps"]) == ("img2img", 0.7, 20)
    assert (stored["sampler"], stored["guidance"], stored["n"]) == ("DPM++ 2M Karras", 7, 4)
    assert stored["hires"] is None and stored["lora"] == []
    assert balance(server, key) == Decimal("9.6")  # 4 images at 0.1
    with server.client(key) as c:
        credit = c.get("/v1/dashboard/billing/credit_grants").json()
    assert credit["key"]["used_images"] == 4 and Decimal(credit["total_used"]) == Decimal("0.4")
    # the seed's query, with the task id as the integer its example shows, is a clean 404
    r = requests.post(
        server.url + QUERY,
        headers={"Content-Type": "application/json", "apikey": key},
        data=json.dumps({"task_id": 382243}),
    )
    assert r.status_code == 404 and r.json()["data"]["error"]["code"] == "job_not_found"


def test_listings_give_the_ids(server, key):
    with httpx.Client(base_url=server.url, params={"key": key}) as c:
        models = c.get("/api/v1/draw/models").json()["data"]
        styles = c.get("/api/v1/draw/styles").json()["data"]
        samplers = c.get("/api/v1/draw/samplers").json()["data"]
    tiny = next(m for m in models if m["name"] == "tiny-256")
    assert tiny["model_id"] == stable_id("tiny-256") == hashlib.md5(b"tiny-256").hexdigest()
    assert tiny["size_ids"] == ["1:1", "3:4", "9:16"] and tiny["max_number"] == 4
    assert {s["style_id"] for s in styles} == {stable_id(SEED_STYLE.id), stable_id("ink")}
    assert {"name": "DPM++ 2M Karras"} in samplers


def test_every_field_maps(make_server):
    """No worker: tasks stay queued, so each stored request shows the mapping without
    drawing anything."""
    srv = make_server(
        models=[TINY.model_copy(update={"loras": ["detail"]})],
        loras=[LoraSpec(name="detail", path="/nowhere/detail.safetensors")],
        default_model="tiny-256",
        styles=[INK],
        run_workers=False,
    )
    k = srv.create_key(credit="10")
    params = {
        "number": 2,
        "hire": 1,
        "seed": 42,
        "steps": 3,
        "cfg_scale": 4.5,
        "lora_scale": 40,
        "denoising_strength": 55,
        "as_prompt": False,
        "prompt": "a cat",
        "size_id": "3:4",
        "model_id": stable_id("tiny-256"),
        "style_id": stable_id("ink"),
        "simper": "euler a",
        "negative_prompt": "blurry",
    }
    r = submit(srv, k, params)
    assert r.status_code == 200, r.text
    stored = stored_request(srv, r.json()["task_id"])
    assert (stored["n"], stored["seed"], stored["steps"], stored["guidance"]) == (2, 42, 3, 4.5)
    assert stored["lora"] == [{"name": "detail", "scale": 0.4}]
    assert stored["hires"] == {"scale": 2.0, "strength": 0.55, "steps": None}
    assert (stored["kind"], stored["strength"]) == ("img2img", 0.55)
    assert (stored["width"], stored["height"]) == (192, 256)
    assert stored["prompt"] == "ink painting of a cat"
    assert stored["negative_prompt"] == "blurry, photo"
    assert stored["sampler"] == "Euler a" and stored["prompt_enhancement"] is False
    assert stored["image"] and stored["model"] == "tiny-256"

    # defaults: empty params; model by name, style by its own id, size from the image
    r = submit(srv, k, "{}", image=gradient_png(144, 256))
    assert r.status_code == 200, r.text
    stored = stored_request(srv, r.json()["task_id"])
    assert (stored["n"], stored["steps"], stored["guidance"], stored["strength"]) == (
        1,
        20,
        7,
        0.7,
    )
    assert (stored["width"], stored["height"]) == (144, 256)  # nearest ratio to the input
    assert stored["hires"] is None and stored["sampler"] is None and stored["prompt"] == ""
    assert stored["lora"] == [{"name": "detail", "scale": 0.75}]
    r = submit(srv, k, {"model_id": "tiny-256", "style_id": "ink", "denoising_strength": 0})
    stored = stored_request(srv, r.json()["task_id"])
    assert stored["strength"] == 0.01 and stored["prompt"] == "ink painting of "
    seeds = {stored_request(srv, submit(srv, k, {"seed": -1}).json()["task_id"])["seed"]}
    seeds.add(stored_request(srv, submit(srv, k, {"seed": -1}).json()["task_id"])["seed"])
    assert len(seeds) == 2  # -1: a fresh random seed each time


def test_hires_fix_doubles_the_size(server, key):
    r = submit(server, key, {**FAST, "hire": 1, "steps": 2, "denoising_strength": 50})
    assert r.status_code == 200, r.text
    done = poll(server, key, r.json()["task_id"])
    assert done["status"] == "succeeded", done
    assert fetch_image(done["images"][0]["url"]).size == (512, 512)


def test_hires_fix_beyond_2048_pixels_is_a_400_naming_hire(make_server):
    big = TINY.model_copy(
        update={"name": "big", "sizes": ["1280x1280"], "default_size": "1280x1280"}
    )
    srv = make_server(models=[big], default_model="big", run_workers=False)  # refused at admission
    k = srv.create_key(credit="1")
    r = submit(srv, k, {"number": 1, "hire": 1, "prompt": "x"})
    assert "2048" in _error(r, 400, "invalid_value", "hire")
    assert balance(srv, k) == Decimal("1")


def test_signed_requests(server):
    """A key with a signing secret: sign = md5(query string + SK), as the seed's PHP
    demo computes it; missing or wrong signatures are refused and cost nothing."""
    k = server.create_key(credit="1", with_secret=True)
    sk = server.core.box.decrypt(server.key_row(k).secret_enc)
    qs = urlencode({"key": k})  # PHP's http_build_query(['key' => $API_KEY])
    sign = hashlib.md5((qs + sk).encode()).hexdigest()

    r = submit(server, k, FAST, headers={"sign": sign}, query=qs)
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]

    missing = submit(server, k, FAST, query=qs)
    assert missing.status_code == 401
    assert missing.json()["data"]["error"] == {
        "code": "signature_required",
        "param": "sign",
        "message": missing.json()["msg"],
    }
    wrong = submit(server, k, FAST, headers={"sign": "0" * 32}, query=qs)
    assert wrong.status_code == 401 and wrong.json()["data"]["error"]["code"] == "invalid_signature"
    # the signature covers the query string: changing it breaks the signature
    moved = submit(server, k, FAST, headers={"sign": sign}, query=qs + "&x=1")
    assert moved.status_code == 401
    upper = submit(server, k, FAST, headers={"sign": sign.upper()}, query=qs)
    assert upper.status_code == 200  # hex is hex, whatever its case

    # the query endpoint: the key in the apikey header, no query string: md5("" + SK)
    r = query(server, k, task_id, headers={"sign": hashlib.md5(sk.encode()).hexdigest()})
    assert r.status_code == 200 and r.json()["data"]["task_id"] == task_id
    assert query(server, k, task_id).status_code == 401

    # a key without a secret needs no signature and ignores one
    plain = server.create_key(credit="1")
    assert submit(server, plain, FAST, headers={"sign": "whatever"}).status_code == 200
    with server.client(k) as c:  # only the two correctly signed requests made tasks
        assert len(c.get("/v1/jobs").json()["data"]) == 2


def _error(r: httpx.Response, status: int, code: str, param: str | None = None) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"code", "msg", "data"} and body["code"] == status
    data = body["data"]
    assert data["status"] == "failed" and data["task_id"] is None and data["images"] == []
    assert data["error"]["code"] == code and data["error"]["message"] == body["msg"]
    if param is not None:
        assert data["error"]["param"] == param
    assert "Traceback" not in r.text
    return body["msg"]


@pytest.mark.parametrize(
    ("patch", "param", "words"),
    [
        ({"number": 0}, "number", ">= 1"),
        ({"number": 5}, "number", "between 1 and 4 for model tiny-256"),
        ({"hire": 2}, "hire", "between 0 and 1"),
        ({"seed": -2}, "seed", "between -1 and 9999999999"),
        ({"seed": 10_000_000_000}, "seed", "between -1 and 9999999999"),
        ({"steps": 0}, "steps", ">= 1"),
        ({"steps": 101}, "steps", "between 1 and 100 for model tiny-256"),
        ({"cfg_scale": 31}, "cfg_scale", "between 0 and 30"),
        ({"lora_scale": 101}, "lora_scale", "between 0 and 100"),
        ({"denoising_strength": -1}, "denoising_strength", "between 0 and 100"),
        ({"denoising_strength": 100.5}, "denoising_strength", "between 0 and 100"),
        ({"as_prompt": "maybe"}, "as_prompt", "true or false"),
        ({"size_id": "5:7"}, "size_id", "allowed: 1:1, 3:4, 9:16"),
        ({"model_id": "0" * 32}, "model_id", stable_id("tiny-256")),
        ({"style_id": "oil"}, "style_id", stable_id("ink")),
        ({"simper": "DPM++ 9M"}, "simper", "DPM++ 2M Karras"),
        ({"prompt": "x" * 4001}, "prompt", "0 to 4000 characters"),
        ({"steps": "many"}, "steps", "integer"),
        ({"sampler": "Euler"}, "sampler", "Unknown parameter"),
    ],
)
def test_400_names_field_and_range(server, key, patch, param, words):
    code = "unknown_parameter" if "Unknown" in words else "invalid_value"
    message = _error(submit(server, key, {**FAST, **patch}), 400, code, param)
    assert words in message and param in message
    assert balance(server, key) == Decimal("10")
    row = server.key_row(key)
    assert row.images_used == 0 and row.images_reserved == 0


def test_400_bad_multipart_bodies(server, key):
    def post(files=None, data=None, headers=None):
        return httpx.post(
            f"{server.url}{SUBMIT}?key={key}", files=files, data=data, headers=headers, timeout=60
        )

    image = {"image": ("1.png", gradient_png(), "image/png")}
    _error(post(image), 400, "missing_field", "params")
    assert "JSON" in _error(post(image, {"params": "{nope"}), 400, "invalid_value", "params")
    assert "JSON object" in _error(post(image, {"params": "[1]"}), 400, "invalid_value", "params")
    _error(post(None, {"params": "{}"}), 400, "invalid_value", "image")
    bad = {"image": ("1.png", b"not an image", "image/png")}
    assert "readable image" in _error(post(bad, {"params": "{}"}), 400, "invalid_value", "image")
    two = [
        ("image", ("1.png", gradient_png(), "image/png")),
        ("image", ("2.png", gradient_png(), "image/png")),
    ]
    assert "one file" in _error(post(two, {"params": "{}"}), 400, "invalid_value", "image")
    _error(post(image, {"params": "{}", "mode": "x"}), 400, "unknown_parameter", "mode")
    truncated = httpx.post(
        f"{server.url}{SUBMIT}?key={key}",
        content=b'--x\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    _error(truncated, 400, "invalid_value", "image")
    zh = submit(server, key, {**FAST, "steps": 0}, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "steps" in _error(zh, 400, "invalid_value") and "不小于 1" in zh.json()["msg"]
    assert balance(server, key) == Decimal("10")


def test_query_errors(server, key):
    other = server.create_key(credit="1")
    r = submit(server, key, FAST)
    task_id = r.json()["task_id"]
    assert poll(server, key, task_id)["status"] == "succeeded"
    _error(query(server, other, task_id), 404, "job_not_found")  # another account's task
    _error(query(server, key, "nope"), 404, "job_not_found")
    r = httpx.post(server.url + QUERY, json={}, headers={"apikey": key})
    _error(r, 400, "missing_field", "task_id")
    r = httpx.post(server.url + QUERY, content=b"{", headers={"apikey": key})
    _error(r, 400, "invalid_json")
    r = httpx.post(
        server.url + "/api/v1/draw/cancel", json={"task_id": task_id}, headers={"apikey": key}
    )
    assert "already finished" in _error(r, 409, "job_finished")


def test_401_403(server):
    msg = _error(submit(server, None, FAST), 401, "missing_api_key")
    assert "?key=" in msg and "apikey" in msg
    _error(submit(server, "sk-wrong", FAST), 401, "invalid_api_key")
    _error(httpx.post(server.url + QUERY, json={"task_id": "x"}), 401, "missing_api_key")
    from pixgate.accounts import keys

    revoked = server.create_key(credit="1")
    asyncio.run_coroutine_threadsafe(
        keys.set_enabled(server.core.db, revoked, False), server.server_loop()
    ).result(10)
    _error(submit(server, revoked, FAST), 403, "key_disabled")
    tiny_only = server.create_key(credit="1", allowed_models=["other"])
    _error(submit(server, tiny_only, FAST), 403, "model_not_allowed", "model")
    zh = submit(server, None, FAST, headers={"Accept-Language": "zh"})
    assert "密钥" in _error(zh, 401, "missing_api_key")


def test_429_free_plan_and_credit(server, make_server):
    assert default_plans()["free"].requests_per_second == 1  # the seed's 1 request/s
    assert default_plans()["free"].requests_per_day == 10000  # and its daily total
    srv = server  # limits are per key: the shared server will do
    free = srv.create_key(credit="1", plan="free")
    first = submit(srv, free, FAST)
    assert first.status_code == 200, first.text
    r = submit(srv, free, FAST)
    assert "plan free" in _error(r, 429, "rate_limited") and int(r.headers["retry-after"]) >= 1
    paid = srv.create_key(credit="1", plan="paid")
    assert all(submit(srv, paid, FAST).status_code == 200 for _ in range(3))
    broke = srv.create_key(credit="0.1")
    _error(submit(srv, broke, {**FAST, "number": 2}), 429, "insufficient_credit")
    capped = srv.create_key(credit="1", images=0)
    _error(submit(srv, capped, FAST), 429, "image_cap_reached")
    assert poll(srv, free, first.json()["task_id"])["status"] == "succeeded"
    assert srv.key_row(free).images_used == 1

    daily = make_server(  # the tasks only need to be accepted: no worker
        models=[TINY],
        default_model="tiny-256",
        plans={"free": Plan(requests_per_day=2)},
        run_workers=False,
    )
    k = daily.create_key(credit="1", plan="free")
    assert [submit(daily, k, FAST).status_code for _ in range(3)] == [200, 200, 429]


def test_451_refused_prompt_is_free(make_server):
    srv = make_server(  # no worker: the accepted task's upload stays where it was stored
        models=[TINY],
        default_model="tiny-256",
        blocked_terms=["forbidden"],
        styles=[INK],
        run_workers=False,
    )
    k = srv.create_key(credit="1")
    msg = _error(
        submit(srv, k, {**FAST, "prompt": "Forbidden art"}), 451, "content_refused", "prompt"
    )
    assert "prompt" in msg
    _error(
        submit(srv, k, {**FAST, "negative_prompt": "forbidden"}),
        451,
        "content_refused",
        "negative_prompt",
    )
    assert balance(srv, k) == Decimal("1")
    assert list(srv.settings.files_dir.rglob("in-*")) == []  # the uploads were not kept
    assert submit(srv, k, FAST).status_code == 200
    assert len(list(srv.settings.files_dir.rglob("in-*"))) == 1


def test_failed_task_reports_its_error_and_costs_nothing(make_server):
    broken = TINY.model_copy(update={"source": "fake:error=generation_failed"})
    server = make_server(models=[broken], default_model="tiny-256")
    key = server.create_key(credit="10")
    r = submit(server, key, FAST)
    done = poll(server, key, r.json()["task_id"])
    assert done["status"] == "failed" and done["images"] == []
    assert done["error"]["code"] == "generation_failed"
    assert "nothing was charged" in done["error"]["message"]
    assert balance(server, key) == Decimal("10")


def test_cancel_a_queued_task(make_server):
    srv = make_server(models=[TINY], default_model="tiny-256", run_workers=False)
    k = srv.create_key(credit="1")
    task_id = submit(srv, k, {**FAST, "number": 3}).json()["task_id"]
    assert balance(srv, k) == Decimal("0.7")  # reserved while queued
    r = httpx.post(
        srv.url + "/api/v1/draw/cancel", json={"task_id": task_id}, headers={"apikey": k}
    )
    assert r.status_code == 200 and r.json()["data"]["status"] == "cancelled"
    assert query(srv, k, task_id).json()["data"]["status"] == "cancelled"
    assert balance(srv, k) == Decimal("1")


def test_cors_preflight_from_another_origin(server, key):
    origin = {"Origin": "https://app.example.com"}
    for path in (SUBMIT, QUERY):
        pre = httpx.options(
            server.url + path,
            headers={
                **origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "apikey, sign, content-type",
            },
        )
        assert pre.status_code == 200, pre.text
        assert pre.headers["access-control-allow-origin"] == "*"
        allowed = pre.headers["access-control-allow-headers"].lower()
        assert "apikey" in allowed and "sign" in allowed
    r = submit(server, key, FAST, headers=origin)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
