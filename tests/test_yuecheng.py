"""The Yuecheng VisGen dialect (seed 000): the seed's own cURL, Python and JavaScript
examples against a live server, every documented error status in the seed's shape,
CORS for browsers on other origins, and billing that matches `api_usage`."""

from __future__ import annotations

import asyncio
import json
import subprocess
from decimal import Decimal

import httpx
import pytest
import requests

from pixgate.api.dialects.yuecheng import render_error, status_for
from pixgate.errors import PixgateError
from pixgate.spec.catalog import YUECHENG_SIZES, ModelSpec
from tests.conftest import balance
from tests.images import fetch_image

SEED_PATH = "/API/AI-picture/endpoint_pic.php"
ALIAS = "/yuecheng/v1/generate"
MODEL = "Yuecheng-VisGen/VisGen"
PROMPT = "一只可爱的猫咪在花园里玩耍,阳光明媚"
# A fast request for the tests that are not about the seed's own examples.
FAST = {"prompt": "a cat", "image_size": "768x1024", "num_inference_steps": 1}


# The demo's VisGen (tiny-sd, 0.2 CNY an image), defaulting to 1 step instead of 20 so the
# seed's examples, which leave num_inference_steps out, run fast on a CPU.
FAST_VISGEN = ModelSpec(
    name=MODEL,
    source="builtin:tiny-sd",
    sizes=YUECHENG_SIZES,
    price=Decimal("0.2"),
    default_steps=1,
)


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared by the tests that make their own keys and read only their own results."""
    return make_module_server(models=[FAST_VISGEN])


@pytest.fixture
def yc(server):
    """A yc-pic- key with a 100-image cap and credit for 500 images at 0.2 CNY."""
    return server.create_key(prefix="yc-pic-", images=100, credit="100")


def post(server, body: dict, path: str = SEED_PATH, **headers) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=120, headers=headers) as c:
        return c.post(path, json=body)


def assert_success(body: dict, used: int, remaining: int, n: int = 1) -> None:
    assert set(body) == {
        "success",
        "images",
        "model",
        "images_generated",
        "api_usage",
        "timings",
        "seed",
    }
    assert body["success"] is True
    assert body["model"] == MODEL
    assert body["images_generated"] == n == len(body["images"])
    assert all(set(i) == {"url"} for i in body["images"])
    assert body["api_usage"] == {"used_images": used, "remaining_images": remaining}
    assert set(body["timings"]) == {"inference"} and body["timings"]["inference"] > 0
    assert isinstance(body["seed"], int) and 0 <= body["seed"] <= 9_999_999_999


@pytest.mark.slow
def test_seed_examples_curl_python_javascript(server, yc):
    """The seed's three examples, verbatim but for host and key; each image is charged once
    and api_usage counts it, in step with the account's credit summary."""
    url = server.url + SEED_PATH
    curl_body = f"""{{
"api_key": "{yc}",
"prompt": "一只可爱的猫咪在花园里玩耍,阳光明媚",
"model": "Yuecheng-VisGen/VisGen",
"image_size": "1024x1024",
"batch_size": 1
}}"""
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", url, "-H", "Content-Type: application/json", "-d", curl_body],
        capture_output=True,
        check=True,
        timeout=120,
    )
    first = json.loads(out.stdout)
    assert_success(first, used=1, remaining=99)
    image = fetch_image(first["images"][0]["url"])
    assert image.size == (1024, 1024) and image.format == "PNG"

    # Python (requests)
    payload = {
        "api_key": yc,
        "prompt": "一只可爱的猫咪在花园里玩耍,阳光明媚",
        "model": "Yuecheng-VisGen/VisGen",
        "image_size": "1024x1024",
        "batch_size": 1,
    }
    response = requests.post(url, json=payload)
    data = response.json()
    assert response.status_code == 200
    assert_success(data, used=2, remaining=98)

    # JavaScript (fetch), run by Node
    script = f"""
const response = await fetch({json.dumps(url)}, {{
method: "POST",
headers: {{
"Content-Type": "application/json",
}},
body: JSON.stringify({{
api_key: {json.dumps(yc)},
prompt: "一只可爱的猫咪在花园里玩耍,阳光明媚",
model: "Yuecheng-VisGen/VisGen",
image_size: "1024x1024",
batch_size: 1
}})
}});
const data = await response.json();
console.log(JSON.stringify(data));
"""
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert_success(json.loads(out.stdout), used=3, remaining=97)

    with server.client(yc) as c:
        credit = c.get("/v1/dashboard/billing/credit_grants").json()
    assert credit["key"]["used_images"] == 3
    assert credit["key"]["remaining_images"] == 97
    assert Decimal(credit["total_used"]) == Decimal("0.6")  # 3 images at 0.2
    assert Decimal(credit["total_available"]) == Decimal("99.4")
    row = server.key_row(yc)
    assert row.images_used == 3 and row.images_reserved == 0


def test_defaults_alias_and_fields(make_server):
    srv = make_server()  # the demo catalog's VisGen: the seed's default of 20 steps
    yc = srv.create_key(prefix="yc-pic-", images=100, credit="100")
    body = {
        "api_key": yc,
        "prompt": "a cat",
        "model": MODEL,
        "image_size": "720x1280",
        "negative_prompt": "blurry",
        "batch_size": 2,
        "seed": 9_999_999_998,
        "num_inference_steps": 1,
        "guidance_scale": 0,
    }
    r = post(srv, body, ALIAS)
    assert r.status_code == 200, r.text
    data = r.json()
    assert_success(data, used=2, remaining=98, n=2)
    assert data["seed"] == 9_999_999_998
    assert {fetch_image(i["url"]).size for i in data["images"]} == {(720, 1280)}
    with srv.client(yc) as c:
        job = c.get("/v1/jobs").json()["data"][0]
    stored = (
        asyncio.run_coroutine_threadsafe(srv.core.queue.get(job["id"]), srv.server_loop())
        .result(10)
        .request
    )
    assert (stored["negative_prompt"], stored["n"], stored["steps"]) == ("blurry", 2, 1)
    assert (stored["seed"], stored["guidance"]) == (9_999_999_998, 0)


def test_defaults_and_503_timeout(make_server):
    """Without a worker the job times out (504 in the core, 503 in the seed's vocabulary)
    and costs nothing; its stored request shows the defaults without drawing anything."""
    srv = make_server(run_workers=False, generation_timeout_seconds=0.5)
    k = srv.create_key(prefix="yc-pic-", credit="1")
    message = _error(post(srv, {"api_key": k, "prompt": "a cat"}), 503)
    assert "nothing was charged" in message
    with srv.client(k) as c:
        job = c.get("/v1/jobs").json()["data"][0]
    stored = (
        asyncio.run_coroutine_threadsafe(srv.core.queue.get(job["id"]), srv.server_loop())
        .result(10)
        .request
    )
    assert (stored["model"], stored["width"], stored["height"]) == (MODEL, 1024, 1024)
    assert (stored["n"], stored["steps"], stored["guidance"]) == (1, 20, 7.5)
    assert stored["negative_prompt"] is None and 0 <= stored["seed"] <= 9_999_999_999
    assert balance(srv, k) == Decimal("1")


def test_all_five_sizes_are_accepted(server):
    """Each of the seed's sizes passes validation and reaches admission (where a key
    without credit is stopped): no image needs to be drawn to show it."""
    k = server.create_key(prefix="yc-pic-")
    for size in YUECHENG_SIZES:
        r = post(server, {**FAST, "api_key": k, "image_size": size})
        assert "Insufficient credit" in _error(r, 429), size
    assert "image_size" in _error(post(server, {**FAST, "api_key": k, "image_size": "1x1"}), 400)


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"success", "error"} and body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in r.text
    return body["error"]


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"batch_size": 0}, ["batch_size", "between 1 and 4"]),
        ({"batch_size": 5}, ["batch_size", "between 1 and 4"]),
        ({"seed": 10_000_000_000}, ["seed", "between 0 and 9999999999"]),
        ({"seed": -1}, ["seed", "between 0 and 9999999999"]),
        ({"num_inference_steps": 0}, ["num_inference_steps", "between 1 and 100"]),
        ({"num_inference_steps": 101}, ["num_inference_steps", "between 1 and 100"]),
        ({"guidance_scale": 20.5}, ["guidance_scale", "between 0 and 20"]),
        ({"guidance_scale": -1}, ["guidance_scale", "between 0 and 20"]),
        ({"image_size": "512x512"}, ["image_size", *YUECHENG_SIZES]),
        ({"image_size": "huge"}, ["image_size", "1024x1024, 960x1280"]),
        ({"prompt": ""}, ["prompt", "1 to 4000"]),
        ({"prompt": None}, ["prompt"]),
        ({"batch_size": "two"}, ["batch_size", "integer"]),
        ({"steps": 5}, ["Unknown parameter 'steps'"]),
        ({"api_key": 12345}, ["api_key", "string"]),
    ],
)
def test_400_names_field_and_range(server, yc, patch, words):
    message = _error(post(server, {**FAST, "api_key": yc, **patch}), 400)
    for word in words:
        assert word in message
    row = server.key_row(yc)
    assert row.images_used == 0 and row.images_reserved == 0


def test_400_bad_bodies_and_chinese(server, yc):
    message = _error(post(server, {"api_key": yc}), 400)
    assert "prompt" in message
    with httpx.Client(base_url=server.url) as c:
        r = c.post(SEED_PATH, content=b"{nope", headers={"Content-Type": "application/json"})
        assert "JSON" in _error(r, 400)
        assert "JSON object" in _error(c.post(SEED_PATH, json=[1]), 400)
        assert _error(c.get(SEED_PATH), 400)  # the seed documents POST only
    zh = _error(
        post(server, {**FAST, "api_key": yc, "batch_size": 9}, **{"Accept-Language": "zh-CN"}),
        400,
    )
    assert "batch_size" in zh and "1 到 4" in zh
    zh = _error(post(server, {**FAST}, **{"Accept-Language": "zh-CN,zh;q=0.9"}), 401)
    assert "api_key" in zh and "密钥" in zh


def test_401_403_404_429(server):
    assert "api_key" in _error(post(server, FAST), 401)
    assert "Invalid API key" in _error(post(server, {**FAST, "api_key": "yc-pic-wrong"}), 401)

    tiny_only = server.create_key(prefix="yc-pic-", credit="10", allowed_models=["tiny-sd"])
    assert MODEL in _error(post(server, {**FAST, "api_key": tiny_only}), 403)
    from pixgate.accounts import keys

    revoked = server.create_key(prefix="yc-pic-", credit="10")
    asyncio.run_coroutine_threadsafe(
        keys.set_enabled(server.core.db, revoked, False), server.server_loop()
    ).result(10)
    assert "revoked" in _error(post(server, {**FAST, "api_key": revoked}), 403)

    k = server.create_key(prefix="yc-pic-", credit="10")
    message = _error(post(server, {**FAST, "api_key": k, "model": "VisGen-9"}), 404)
    assert "VisGen-9" in message and MODEL in message
    assert _error(post(server, {**FAST, "api_key": k}, "/yuecheng/v1/nothing"), 404)

    capped = server.create_key(prefix="yc-pic-", images=0, credit="10")
    assert "image limit" in _error(post(server, {**FAST, "api_key": capped}), 429)
    broke = server.create_key(prefix="yc-pic-", credit="0.3")
    message = _error(post(server, {**FAST, "api_key": broke, "batch_size": 2}), 429)
    assert "Insufficient credit" in message
    assert balance(server, broke) == Decimal("0.3")
    for k in (capped, broke):
        row = server.key_row(k)
        assert row.images_used == 0 and row.images_reserved == 0


def test_429_free_plan_rate_limit(server):
    """A free key's 1 request/s: the first request counts (and is then refused for want
    of credit, which keeps the test fast); the next, within the second, is rate limited."""
    k = server.create_key(prefix="yc-pic-", plan="free")
    assert "Insufficient credit" in _error(post(server, {**FAST, "api_key": k}), 429)
    r = post(server, {**FAST, "api_key": k})
    assert "Rate limit" in _error(r, 429) and "plan free" in r.json()["error"]
    assert int(r.headers["retry-after"]) >= 1


def test_451_blocked_content_is_free(make_server):
    srv = make_server(blocked_terms=["forbidden thing"], run_workers=False)  # refused first
    k = srv.create_key(prefix="yc-pic-", credit="1")
    message = _error(post(srv, {**FAST, "api_key": k, "prompt": "a FORBIDDEN thing"}), 451)
    assert "prompt" in message
    r = post(srv, {**FAST, "api_key": k, "negative_prompt": "forbidden thing"})
    assert "negative_prompt" in _error(r, 451)
    assert balance(srv, k) == Decimal("1")
    assert srv.key_row(k).images_used == 0


def test_500_failed_generation_is_free(make_server):
    broken = FAST_VISGEN.model_copy(update={"source": "fake:error=generation_failed"})
    server = make_server(models=[broken])
    yc = server.create_key(prefix="yc-pic-", images=100, credit="100")
    message = _error(post(server, {**FAST, "api_key": yc}), 500)
    assert "nothing was charged" in message
    assert balance(server, yc) == Decimal("100")
    row = server.key_row(yc)
    assert row.images_used == 0 and row.images_reserved == 0


def test_503_unavailable_model(make_server):
    broken = ModelSpec(name=MODEL, source="/nonexistent/visgen", sizes=YUECHENG_SIZES, price=0)
    srv = make_server(models=[broken], demo=False)
    k = srv.create_key(prefix="yc-pic-")
    r = post(srv, {**FAST, "api_key": k})
    assert MODEL in _error(r, 503) and r.headers["retry-after"]


def test_status_folding_and_502():
    """Statuses the seed does not list fold into ones it does; 502 (an upstream relay's
    failure) passes through as the seed documents it."""
    assert [status_for(s) for s in (400, 401, 403, 404, 429, 451, 500, 502, 503)] == [
        400,
        401,
        403,
        404,
        429,
        451,
        500,
        502,
        503,
    ]
    assert [status_for(s) for s in (405, 409, 413, 418, 504, 507)] == [
        400,
        400,
        400,
        400,
        503,
        500,
    ]
    r = render_error(PixgateError("body_too_large", args_={"size": 9, "limit": 1}), "en")
    assert r.status_code == 400 and json.loads(r.body)["success"] is False


def test_cors_for_browsers_on_other_origins(server, yc):
    origin = {"Origin": "https://shop.example.com"}
    with httpx.Client(base_url=server.url, timeout=120) as c:
        for path in (SEED_PATH, ALIAS):
            pre = c.options(
                path,
                headers={
                    **origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            assert pre.status_code == 200, pre.text
            assert pre.headers["access-control-allow-origin"] == "*"
            assert "POST" in pre.headers["access-control-allow-methods"]
            assert "content-type" in pre.headers["access-control-allow-headers"].lower()
        ok = c.post(SEED_PATH, json={**FAST, "api_key": yc}, headers=origin)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "*"
        bad = c.post(SEED_PATH, json=FAST, headers=origin)
        assert bad.status_code == 401 and bad.headers["access-control-allow-origin"] == "*"
        # the rest of the API is not opened to other origins
        other = c.options(
            "/v1/images/generations",
            headers={**origin, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in other.headers
