"""Relayed models end to end: real pixgate servers whose models are served by fake upstreams
(tests/upstreams.py) of every channel type, reached through every dialect (OpenAI with the
SDK and httpx, Yuecheng, Volcengine CVProcess, aichat tasks), synchronously and as tasks
with a webhook; images come back as the server's own links or base64, never the
upstream's; Volcengine's V4 signing from one pixgate to another; the channel metrics.
Failover and errors: tests/test_relay_failover.py; money, concurrency, admission and
cancellation: tests/test_relay_money.py; secrets, config and the CLI:
tests/test_relay_ops.py."""

from __future__ import annotations

import base64
import io
import json
import re
from decimal import Decimal

import httpx
import openai
import pytest
from PIL import Image

from pixgate.spec.catalog import ModelSpec, stable_id
from tests.conftest import balance
from tests.images import gradient_png
from tests.relay_servers import fixtures, generate, own_images, picture, relayed, until
from tests.test_tasks import TASKS, Receiver, verify
from tests.upstreams import IMAGE_SIZE
from tests.volcengine_client import REQ_KEY, make_key

upstreams, module_upstreams = fixtures()

TYPES = ("openai", "siliconflow", "volcengine", "ark", "a1111")
RESPONSE = {"openai": "url", "ark": "url"}  # the others answer base64
PRICE = Decimal("0.1")
CV = "/volcv?Action=CVProcess&Version=2022-08-31"


@pytest.fixture(scope="module")
def fakes(module_upstreams):
    return {t: module_upstreams(t, RESPONSE.get(t, "b64")) for t in TYPES}


@pytest.fixture(scope="module")
def server(make_module_server, fakes):
    """One channel per type, `r-<type>` relayed to it (as `up-<type>` upstream). The
    tests here never make a channel fail: they share the server, each with its own key."""
    wide = {"sizes": ["256x256", "1024x1024"], "size_range": [256, 768], "max_steps": 200}
    models = [relayed(f"r-{t}", t, upstream_model=f"up-{t}", **wide) for t in TYPES]
    specs = [fake.channel(t) for t, fake in fakes.items()]
    specs[0] = fakes["openai"].channel("openai", headers={"OpenAI-Organization": "org-relay"})
    return make_module_server(
        channels=specs,
        models=models,
        demo=False,
        webhook_allow=["127.0.0.0/8"],
    )


@pytest.fixture
def fresh(fakes):
    for fake in fakes.values():
        fake.reset()
    return fakes


def no_upstream_url(text: str, fakes) -> None:
    for fake in fakes.values():
        assert fake.root not in text, f"an upstream URL leaked: {text[:300]}"


@pytest.mark.parametrize("type", TYPES)
def test_openai_dialect_through_each_channel_type(server, fresh, type):
    up = fresh[type]
    key = server.create_key(credit="10")
    with server.client(key) as c:
        r = generate(c, f"r-{type}", n=2, size="256x256")
    assert r.status_code == 200, r.text
    no_upstream_url(r.text, fresh)
    images = own_images(server, r.json())
    assert len(images) == 2 and all(i.format == "PNG" for i in images)
    assert all(i.size in (IMAGE_SIZE, (256, 256)) for i in images)
    assert len(up.calls) == (2 if type in ("volcengine", "ark") else 1)
    assert all(call.authorized for call in up.calls)
    sent = up.calls[0].json or up.calls[0].form
    if type == "openai":  # the channel's own headers go with every call
        assert up.calls[0].headers["openai-organization"] == "org-relay"
    if type != "a1111":  # a1111 draws with its loaded checkpoint: no model is sent
        assert sent.get("req_key" if type == "volcengine" else "model") == f"up-{type}"
    if RESPONSE.get(type) == "url":  # the upstream's links were downloaded: re-hosted
        assert len(up.downloads) == 2
    assert balance(server, key) == 10 - 2 * PRICE


def test_openai_sdk_sync_and_base64(server, fresh):
    key = server.create_key(credit="10")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    got = client.images.generate(model="r-openai", prompt="a red boat", n=1, size="256x256")
    assert got.data[0].url.startswith(server.url + "/files/")
    image = picture(httpx.get(got.data[0].url).content)
    assert image.size == IMAGE_SIZE
    b64 = client.images.generate(
        model="r-openai", prompt="a red boat", size="256x256", response_format="b64_json"
    )
    assert b64.data[0].b64_json and b64.data[0].url is None
    assert fresh["openai"].downloads  # the upstream answered URLs; the client got bytes
    assert balance(server, key) == 10 - 2 * PRICE


def test_edits_and_variations_are_relayed_with_their_images(server, fresh):
    up = fresh["openai"]
    key = server.create_key(credit="10")
    mask = io.BytesIO()
    Image.new("RGBA", (256, 256), (0, 0, 0, 0)).save(mask, "PNG")
    image = ("i.png", gradient_png(), "image/png")
    with server.client(key) as c:
        form = {"model": "r-openai", "prompt": "a red door", "size": "256x256"}
        edit = c.post("/v1/images/edits", data=form, files={"image": image})
        assert edit.status_code == 200, edit.text
        inpaint = c.post(
            "/v1/images/edits",
            data=form,
            files={"image": image, "mask": ("m.png", mask.getvalue())},
        )
        assert inpaint.status_code == 200, inpaint.text
        form = {"model": "r-openai", "size": "256x256", "n": "2"}
        variation = c.post("/v1/images/variations", data=form, files={"image": image})
        assert variation.status_code == 200, variation.text
    for answer in (edit, inpaint, variation):
        no_upstream_url(answer.text, fresh)
        own_images(server, answer.json())
    assert [call.path for call in up.calls] == [
        "/v1/images/edits",
        "/v1/images/edits",
        "/v1/images/variations",
    ]
    assert all("image" in call.files and call.authorized for call in up.calls)
    assert "mask" not in up.calls[0].files and "mask" in up.calls[1].files
    assert up.calls[1].form["prompt"] == "a red door"
    assert balance(server, key) == 10 - 4 * PRICE


def test_yuecheng_dialect(server, fresh):
    key = server.create_key(credit="10")
    with server.client() as c:
        r = c.post(
            "/API/AI-picture/endpoint_pic.php",
            json={
                "api_key": key,
                "model": "r-siliconflow",
                "prompt": "a lighthouse",
                "image_size": "1024x1024",
                "batch_size": 2,
                "negative_prompt": "fog",
                "seed": 5,
            },
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] and body["images_generated"] == 2 and body["model"] == "r-siliconflow"
    own_images(server, {"data": body["images"]})
    sent = fresh["siliconflow"].calls[0].json
    assert sent["batch_size"] == 2 and sent["negative_prompt"] == "fog" and sent["seed"] == 5
    assert sent["image_size"] == "1024x1024"
    assert balance(server, key) == 10 - 2 * PRICE


def test_volcengine_dialect_cvprocess(server, fresh):
    key = server.create_key(credit="10")
    body = {
        "req_key": "r-volcengine",
        "prompt": "a lighthouse",
        "width": 256,
        "height": 256,
        "seed": 9,
        "use_sr": False,
        "return_url": True,
    }
    with server.client(key) as c:
        r = c.post(CV, json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert r.json()["code"] == 10000
    (b64,) = data["binary_data_base64"]
    assert picture(base64.b64decode(b64)).format == "PNG"
    own_images(server, {"data": [{"url": u} for u in data["image_urls"]]})
    no_upstream_url(r.text, fresh)
    (call,) = fresh["volcengine"].calls
    assert call.authorized and call.json["req_key"] == "up-volcengine" and call.json["seed"] == 9
    assert balance(server, key) == 10 - PRICE


def test_aichat_image_to_image_task(server, fresh):
    key = server.create_key(credit="10")
    params = {"number": 2, "steps": 4, "size_id": "1:1", "prompt": "a cat"}
    params["model_id"] = stable_id("r-a1111")
    r = httpx.post(
        f"{server.url}/api/image2image?key={key}",
        files={"image": ("1.png", gradient_png(), "image/png")},
        data={"params": json.dumps(params)},
    )
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]

    def done():
        data = httpx.post(
            f"{server.url}/api/v1/draw/query?key={key}", json={"task_id": task_id}
        ).json()["data"]
        return data if data["status"] in ("succeeded", "failed", "cancelled") else None

    data = until(done, what="the aichat task")
    assert data["status"] == "succeeded" and len(data["images"]) == 2, data
    own_images(server, {"data": data["images"]})
    (call,) = fresh["a1111"].calls
    assert call.path == "/sdapi/v1/img2img" and call.json["init_images"]
    assert call.json["steps"] == 4 and call.json["denoising_strength"] == pytest.approx(0.7)
    assert balance(server, key) == 10 - 2 * PRICE


def _yuecheng(server, key):
    body = {"api_key": key, "model": "r-openai", "prompt": "a", "image_size": "1024x1024"}
    r = httpx.post(server.url + "/API/AI-picture/endpoint_pic.php", json=body)
    return r.status_code, r.text


def _volcengine(server, key):
    body = {"req_key": "r-openai", "prompt": "a", "width": 256, "height": 256, "use_sr": False}
    r = httpx.post(server.url + CV, json=body, headers={"Authorization": f"Bearer {key}"})
    return r.status_code, r.text


def _aichat(server, key):
    params = {"size_id": "1:1", "prompt": "a cat", "model_id": "r-openai"}
    r = httpx.post(
        f"{server.url}/api/image2image?key={key}",
        files={"image": ("1.png", gradient_png(), "image/png")},
        data={"params": json.dumps(params)},
    )
    return r.status_code, r.text


@pytest.mark.parametrize("send", [_yuecheng, _volcengine, _aichat], ids=lambda f: f.__name__)
def test_dialect_defaults_are_not_fields_the_client_set(server, fresh, send):
    """A request that sets none of the optional fields (guidance, steps, strength) reaches
    a model relayed to an openai channel, which can take none of them: the values a dialect
    fills in when the client leaves them out are not the client's to be refused for."""
    key = server.create_key(credit="10")
    status, text = send(server, key)
    assert status == 200, text


def test_async_task_polled_and_webhook_delivered(server, fresh):
    key = server.create_key(credit="10")
    receiver = Receiver()
    try:
        with server.client(key) as c:
            secret = c.get("/v1/webhooks/secret").json()["secret"]
            r = generate(c, "r-openai", n=2, webhook_url=receiver.url)
            assert r.status_code == 202, r.text
            task = r.json()
            done = until(
                lambda: (t := c.get(f"{TASKS}/{task['id']}").json())["status"] == "succeeded" and t,
                what="the task",
            )
            assert done["images_produced"] == 2 and done["cost"] == "0.2"
            own_images(server, done)
            b64 = c.get(f"{TASKS}/{task['id']}", params={"response_format": "b64_json"}).json()
            assert len(own_images(server, b64)) == 2
            headers, raw, _ = receiver.wait_for(1)[0]
        assert verify(secret, raw, headers["X-Pixgate-Signature"])
        sent = json.loads(raw)
        assert headers["X-Pixgate-Event"] == "task.succeeded" and sent["id"] == task["id"]
        no_upstream_url(raw.decode(), fresh)
        own_images(server, sent)
    finally:
        receiver.close()
    assert balance(server, key) == 10 - 2 * PRICE


def status(c: httpx.Client, task_id: str) -> str:
    return c.get(f"{TASKS}/{task_id}").json()["status"]


def test_sync_and_async_relayed_requests_mixed(server, fresh):
    """Several async tasks and sync requests of relayed models at once all finish."""
    key = server.create_key(credit="10")
    with server.client(key) as c:
        ids = [generate(c, "r-siliconflow", **{"async": True}).json()["id"] for _ in range(4)]
        assert generate(c, "r-ark").status_code == 200
        for task_id in ids:
            until(lambda t=task_id: status(c, t) == "succeeded", what="a task")
    assert balance(server, key) == 10 - 5 * PRICE


def test_channel_metrics(server, fresh):
    key = server.create_key(credit="10")
    with server.client(key) as c:
        assert generate(c, "r-ark").status_code == 200
        text = c.get("/metrics").text
    line = re.search(
        r'^pixgate_channel_requests_total\{channel="ark",outcome="ok"\} (\S+)$', text, re.M
    )
    assert line and float(line.group(1)) >= 1, text
    assert 'pixgate_channel_request_duration_seconds_count{channel="ark"}' in text


# --- Volcengine V4 signing: one pixgate relaying to another -------------------------------
def test_volcengine_channel_signs_for_a_second_pixgate(make_server):
    target = ModelSpec(
        name=REQ_KEY,
        source="fake:",
        sizes=["256x256", "512x512"],
        size_range=(256, 768),
        default_size="256x256",
        max_steps=200,
        price=Decimal("0.05"),
    )
    upstream = make_server(models=[target], demo=False)
    made = make_key(upstream, credit="10", with_secret=True)
    assert made.secret
    channel = {
        "name": "pg-volc",
        "type": "volcengine",
        "base_url": upstream.url,
        "access_key": made.id,
        "secret_key": made.secret,
        "upstream_price": "0.05",
    }
    relay = make_server(
        channels=[channel],
        models=[relayed("volc-relayed", "pg-volc", upstream_model=REQ_KEY)],
        demo=False,
    )
    key = relay.create_key(credit="10")
    with relay.client(key) as c:
        r = generate(c, "volc-relayed", n=2, seed=11)
    assert r.status_code == 200, r.text
    assert upstream.url not in r.text
    images = own_images(relay, r.json())
    assert [i.size for i in images] == [(256, 256), (256, 256)]  # drawn by the upstream
    assert balance(relay, key) == 10 - 2 * PRICE
    # the upstream pixgate charged its own account for the two images it made
    with upstream.client() as c:
        credit = c.get(
            "/v1/dashboard/billing/credit_grants", headers={"Authorization": f"Bearer {made.key}"}
        )
    assert Decimal(credit.json()["total_available"]) == Decimal("9.9")
