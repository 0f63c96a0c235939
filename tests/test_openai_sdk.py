"""The official `openai` SDK against a live pixgate server."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.conftest import generate


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared: each test makes its own key and reads only its own results."""
    return make_module_server()


@pytest.fixture
def sdk(server, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def test_generate_url_then_download(sdk):
    result = sdk.images.generate(
        model="tiny-sd",
        prompt="a lighthouse",
        size="256x256",
        extra_body={"num_inference_steps": 2},
    )
    assert len(result.data) == 1
    url = result.data[0].url
    assert url and "/files/" in url and "expires=" in url and "sig=" in url
    got = httpx.get(url)
    assert got.status_code == 200
    assert got.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(got.content))
    assert image.size == (256, 256)


def test_generate_b64_json_with_n_and_jpeg(sdk):
    result = sdk.images.generate(
        model="tiny-sd",
        prompt="two boats",
        size="256x256",
        n=2,
        response_format="b64_json",
        output_format="jpeg",
        extra_body={"num_inference_steps": 2},
    )
    assert len(result.data) == 2
    for item in result.data:
        raw = base64.b64decode(item.b64_json)
        image = Image.open(io.BytesIO(raw))
        assert image.format == "JPEG" and image.size == (256, 256)


def test_siliconflow_shape_fields(server, key):
    """seed 001's request fields and response fields, from a plain HTTP client."""
    with server.client(key) as c:
        r = c.post(
            "/v1/images/generations",
            json={
                "model": "FLUX.1-schnell",
                "prompt": "an island near sea",
                "image_size": "768x512",
                "batch_size": 2,
                "seed": 123,
                "num_inference_steps": 2,
                "guidance_scale": 5,
                "negative_prompt": "blurry",
                "prompt_enhancement": True,
            },
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seed"] == 123
    assert len(body["images"]) == 2 and len(body["data"]) == 2
    assert isinstance(body["timings"]["inference"], float) and body["timings"]["inference"] > 0
    assert isinstance(body["created"], int)
    # URLs are emitted with a literal '&', never '\u0026' (seed 001's warning).
    assert "&sig=" in r.text and "\\u0026" not in r.text
    size = Image.open(io.BytesIO(httpx.get(body["images"][1]["url"]).content)).size
    assert size == (768, 512)


def test_webp_output(server, key):
    with server.client(key) as c:
        r = generate(c, output_format="webp")
        assert r.status_code == 200, r.text
        got = c.get(r.json()["data"][0]["url"])
    assert got.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(got.content)).format == "WEBP"


def test_models_list_says_which_are_demo(sdk):
    models = {m.id: m for m in sdk.models.list().data}
    assert {
        "tiny-sd",
        "FLUX.1-schnell",
        "stable-diffusion-3-5-large",
        "Yuecheng-VisGen/VisGen",
    } <= set(models)
    assert models["FLUX.1-schnell"].model_extra["demo"] is True
    assert models["FLUX.1-schnell"].model_extra["source"] == "builtin:tiny-flux"
    assert models["tiny-sd"].model_extra["demo"] is False
    assert models["tiny-sd"].model_extra["random_weights"] is True


def test_default_model_without_demo_is_real_or_fails_cleanly(make_server):
    """Without demo mode, seed names point at their real hub sources; offline, a request
    for one fails with a 503 naming the model and costs nothing, never noise."""
    srv = make_server(demo=False, generation_timeout_seconds=60)
    k = srv.create_key(images=5)
    with srv.client(k) as c:
        models = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert models["FLUX.1-schnell"]["source"] == "black-forest-labs/FLUX.1-schnell"
        assert models["FLUX.1-schnell"]["demo"] is False
        assert models["FLUX.1-schnell"]["random_weights"] is False
        assert "Yuecheng-VisGen/VisGen" not in models
        r = c.post("/v1/images/generations", json={"model": "FLUX.1-schnell", "prompt": "x"})
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "model_unavailable" and "FLUX.1-schnell" in err["message"]
    row = srv.key_row(k)
    assert row.images_used == 0 and row.images_reserved == 0
