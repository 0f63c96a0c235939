"""The relay backend's channel-type modules (pixgate.backends.relay.apis) against fake
upstreams (tests/upstreams.py): what each type sends (fields, credentials, the V4
signature) and the images it reads back (base64 and URLs); then the openai, siliconflow and
volcengine types against a real pixgate server. Failures: tests/test_relay_api_failures.py."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from unittest import mock

import pytest
from PIL import Image
from volcengine.auth.SignerV4 import SignerV4
from volcengine.base.Request import Request as VolcRequest
from volcengine.Credentials import Credentials

from pixgate import volc_v4
from pixgate.backends.relay.apis import adapter
from pixgate.spec.catalog import VOLCENGINE_SIZES, ModelSpec
from pixgate.spec.channels import CHANNEL_TYPES, ChannelSpec
from pixgate.spec.request import HiresFix
from tests.relay_calls import (
    ONE_PER_CALL,
    by_type,
    decoded,
    fails,
    fixtures,
    request,
    run,
    with_image,
)
from tests.upstreams import API_KEY, IMAGE_SIZE, FakeUpstream
from tests.volcengine_client import REQ_KEY, make_key

fakes, up = fixtures()


# --- the adapter ---------------------------------------------------------------------------
def test_adapter_has_every_type_and_refuses_others():
    assert all(callable(adapter(t)) for t in CHANNEL_TYPES)
    with pytest.raises(ValueError, match="unknown channel type"):
        adapter("midjourney")


@by_type()
@pytest.mark.parametrize("response", ["b64", "url"])
def test_images_come_back_as_bytes_or_urls(up, response):
    up.response = response
    images = run(up.channel(), request(n=2))
    assert len(images) == 2 and len(up.calls) == (2 if up.type in ONE_PER_CALL else 1)
    url_mode = response == "url" and up.type != "a1111"  # a1111 answers base64 only
    assert all((i.url is not None) == url_mode for i in images)
    assert all(decoded(i).size == IMAGE_SIZE for i in images)
    assert all(c.authorized for c in up.calls)


# --- what each type sends ------------------------------------------------------------------
@by_type("openai")
def test_openai_sends_its_fields_and_bearer_key(up):
    run(up.channel(), request(n=3), model="dall-e-2")
    sent = up.calls[0]
    assert sent.path == "/v1/images/generations"
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json == {
        "model": "dall-e-2",
        "prompt": "a lighthouse",
        "n": 3,
        "size": "256x256",
        "response_format": "b64_json",
    }
    run(up.channel(), request(), model="gpt-image-1")  # always base64; refuses the field
    assert "response_format" not in up.calls[1].json


@by_type("openai")
def test_openai_edits_variations_and_the_mask_convention(up):
    req, inputs = with_image("img2img", n=2)
    run(up.channel(), req, inputs)
    edit = up.calls[-1]
    assert edit.path == "/v1/images/edits" and edit.files == {"image": inputs.image}
    assert edit.form == {
        "model": "up-model",
        "n": "2",
        "size": "256x256",
        "response_format": "b64_json",
        "prompt": "a lighthouse",
    }
    req, inputs = with_image("inpaint")
    run(up.channel(), req, inputs)
    mask = Image.open(io.BytesIO(up.calls[-1].files["mask"]))
    assert mask.mode == "RGBA" and mask.size == (256, 256)
    alpha = mask.getchannel("A")
    assert alpha.getpixel((10, 10)) == 0 and alpha.getpixel((250, 10)) == 255  # white: clear
    source = Image.open(io.BytesIO(inputs.image))
    assert mask.convert("RGB").getpixel((250, 10)) == source.getpixel((250, 10))
    req, inputs = with_image("variation")
    run(up.channel(), req, inputs)
    variation = up.calls[-1]
    assert variation.path == "/v1/images/variations" and "prompt" not in variation.form
    assert set(variation.files) == {"image"}


@by_type("siliconflow")
def test_siliconflow_sends_seed_001_fields(up):
    run(up.channel(), request(n=2), model="FLUX.1-schnell")
    assert up.calls[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert up.calls[0].json == {
        "model": "FLUX.1-schnell",
        "prompt": "a lighthouse",
        "image_size": "256x256",
        "batch_size": 2,
        "num_inference_steps": 6,
        "guidance_scale": 4.5,
        "seed": 41,
    }
    req, inputs = with_image(negative_prompt="fog")
    run(up.channel(), req, inputs)
    sent = up.calls[1].json
    assert sent["negative_prompt"] == "fog"
    assert sent["image"] == "data:image/png;base64," + base64.b64encode(inputs.image).decode()


@by_type("volcengine")
def test_volcengine_signs_each_call_and_sends_cvprocess_fields(up):
    images = run(up.channel(), request(n=3), model=REQ_KEY)
    assert len(images) == 3 and len(up.calls) == 3
    cv_process = {"Action": "CVProcess", "Version": "2022-08-31"}
    assert all(c.authorized and c.query == cv_process for c in up.calls)
    assert sorted(c.json["seed"] for c in up.calls) == [41, 42, 43]
    sent = up.calls[0].json
    assert {k: v for k, v in sent.items() if k != "seed"} == {
        "req_key": REQ_KEY,
        "prompt": "a lighthouse",
        "scale": 4.5,
        "ddim_steps": 6,
        "width": 256,
        "height": 256,
        "use_pre_llm": False,
        "use_sr": False,
        "return_url": False,
    }
    auth = up.calls[0].headers["authorization"]
    assert auth.startswith(f"HMAC-SHA256 Credential={up.access_key}/")
    assert "/cn-north-1/cv/request, SignedHeaders=content-type;host;x-content-sha256;x-date" in auth
    # img2img carries the input; header overrides are signed too
    req, inputs = with_image()
    run(up.channel(headers={"X-Trace": "t1"}, region="cn-beijing"), req, inputs)
    last = up.calls[-1]
    assert last.authorized and last.headers["x-trace"] == "t1"
    assert (
        "x-trace" in last.headers["authorization"]
        and "/cn-beijing/" in last.headers["authorization"]
    )
    assert base64.b64decode(last.json["binary_data_base64"][0]) == inputs.image


@by_type("volcengine")
def test_volcengine_bad_signature_is_auth(up):
    failure = fails(up.channel(secret_key="not-the-secret"))
    assert failure.kind == "auth" and "SignatureDoesNotMatch" in failure.message
    assert "SignatureDoesNotMatch" in failure.message and not up.calls[0].authorized
    failure = fails(up.channel(access_key="AKWHO"))
    assert failure.kind == "auth" and "InvalidAccessKey" in failure.message


def test_sign_matches_the_official_sdk():
    url = "https://visual.volcengineapi.com/?Action=CVProcess&Version=2022-08-31"
    body = json.dumps({"prompt": "千军万马"}, ensure_ascii=False).encode()
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    keys = dict(access_key="AK", secret_key="SK", region="cn-north-1", service="cv")
    ours = volc_v4.sign("POST", url, {"Content-Type": "application/json"}, body, **keys, now=at)
    sdk = VolcRequest()
    sdk.set_method("POST")
    sdk.set_host("visual.volcengineapi.com")
    sdk.set_path("/")
    sdk.set_query({"Action": "CVProcess", "Version": "2022-08-31"})
    sdk.set_headers({"Host": "visual.volcengineapi.com", "Content-Type": "application/json"})
    sdk.set_body(body.decode())
    with mock.patch.object(SignerV4, "get_current_format_date", return_value="20250102T030405Z"):
        SignerV4.sign(sdk, Credentials("AK", "SK", "cv", "cn-north-1"))
    assert ours["Authorization"] == sdk.headers["Authorization"]
    assert ours["X-Content-Sha256"] == sdk.headers["X-Content-Sha256"]


@by_type("ark")
def test_ark_sends_one_call_per_image(up):
    run(up.channel(), request(n=2), model="doubao-seedream-3-0-t2i-250415")
    assert len(up.calls) == 2 and up.calls[0].path == "/api/v3/images/generations"
    assert up.calls[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert sorted(c.json["seed"] for c in up.calls) == [41, 42]
    assert {k: v for k, v in up.calls[0].json.items() if k != "seed"} == {
        "model": "doubao-seedream-3-0-t2i-250415",
        "prompt": "a lighthouse",
        "size": "256x256",
        "guidance_scale": 4.5,
        "response_format": "b64_json",
        "watermark": False,
    }
    req, inputs = with_image()
    run(up.channel(), req, inputs)
    assert up.calls[-1].json["image"].startswith("data:image/png;base64,")


@by_type("a1111")
def test_a1111_txt2img_hires_img2img_and_inpaint(up):
    hires = HiresFix(scale=1.5, strength=0.4, steps=3)
    run(up.channel(), request(n=2, sampler="DPM++ 2M Karras", negative_prompt="fog", hires=hires))
    sent = up.calls[0]
    assert sent.path == "/sdapi/v1/txt2img" and "authorization" not in sent.headers
    assert sent.json == {
        "prompt": "a lighthouse",
        "negative_prompt": "fog",
        "width": 256,
        "height": 256,
        "steps": 6,
        "cfg_scale": 4.5,
        "seed": 41,
        "batch_size": 2,
        "n_iter": 1,
        "do_not_save_grid": True,
        "sampler_name": "DPM++ 2M Karras",
        "enable_hr": True,
        "hr_scale": 1.5,
        "denoising_strength": 0.4,
        "hr_second_pass_steps": 3,
    }
    req, inputs = with_image("img2img", strength=0.3)
    run(up.channel(), req, inputs)
    sent = up.calls[-1]
    assert sent.path == "/sdapi/v1/img2img" and sent.json["denoising_strength"] == 0.3
    assert "mask" not in sent.json and len(sent.json["init_images"]) == 1
    req, inputs = with_image("inpaint")
    run(up.channel(), req, inputs)
    sent = up.calls[-1].json
    assert sent["inpainting_fill"] == 1 and "denoising_strength" not in sent
    assert base64.b64decode(sent["mask"]) == inputs.mask


def test_a1111_basic_auth_and_bearer():
    with FakeUpstream("a1111", api_key="alice:s3cret") as up:
        run(up.channel())
        assert up.calls[0].headers["authorization"] == "Basic YWxpY2U6czNjcmV0"
        assert up.calls[0].authorized
        assert fails(up.channel(api_key="alice:wrong")).kind == "auth"
    with FakeUpstream("a1111", api_key="proxy-token") as up:
        run(up.channel())
        assert up.calls[0].headers["authorization"] == "Bearer proxy-token"


@pytest.mark.parametrize(
    ("type", "kind"),
    [("siliconflow", "inpaint"), ("volcengine", "variation"), ("a1111", "variation")],
)
def test_kinds_a_type_cannot_do_are_rejected_unsent(fakes, type, kind):
    req, inputs = with_image(kind)
    fake = fakes[type]
    fake.reset()
    failure = fails(fake.channel(), req, inputs=inputs)
    assert failure.kind == "rejected" and kind in failure.message and not fake.calls


# --- against a real pixgate ----------------------------------------------------------------
@pytest.fixture(scope="module")
def pixgate(make_module_server):
    target = ModelSpec(
        name="relay-target", source="fake:", sizes=["256x256"], default_size="256x256"
    )
    volc = ModelSpec(
        name=REQ_KEY,
        source="fake:",
        sizes=VOLCENGINE_SIZES,
        size_range=(256, 768),
        default_size="512x512",
        max_steps=200,
    )
    return make_module_server(models=[target, volc], demo=False)


def test_openai_type_against_pixgate(pixgate):
    key = pixgate.create_key(credit="10")
    channel = ChannelSpec(name="pg", type="openai", base_url=pixgate.url + "/v1", api_key=key)
    images = run(channel, request(n=2, model="relay-target"), model="relay-target")
    assert len(images) == 2 and all(decoded(i).size == (256, 256) for i in images)
    for kind in ("inpaint", "variation"):
        req, inputs = with_image(kind, model="relay-target")
        (image,) = run(channel, req, inputs, model="relay-target")
        assert decoded(image).size == (256, 256)
    wrong = ChannelSpec(name="pg", type="openai", base_url=pixgate.url + "/v1", api_key="sk-nope")
    assert fails(wrong).kind == "auth"


def test_siliconflow_type_against_pixgate(pixgate):
    key = pixgate.create_key(credit="10")
    channel = ChannelSpec(name="pg", type="siliconflow", base_url=pixgate.url + "/v1", api_key=key)
    images = run(channel, request(n=2, negative_prompt="fog"), model="relay-target")
    assert len(images) == 2 and all(decoded(i).size == (256, 256) for i in images)


def test_volcengine_type_against_pixgate(pixgate):
    made = make_key(pixgate, credit="10", with_secret=True)
    channel = ChannelSpec(
        name="pg",
        type="volcengine",
        base_url=pixgate.url,
        access_key=made.id,
        secret_key=made.secret,
    )
    images = run(channel, request(n=2, model=REQ_KEY), model=REQ_KEY)
    assert len(images) == 2 and all(decoded(i).size == (256, 256) for i in images)
    # the seed's relay path: POST /volcv?Action=CVProcess&Version=2022-08-31
    relay = channel.model_copy(update={"base_url": pixgate.url + "/volcv"})
    (image,) = run(relay, request(model=REQ_KEY, seed=7), model=REQ_KEY)
    assert decoded(image).size == (256, 256)
    wrong = ChannelSpec(
        name="pg", type="volcengine", base_url=pixgate.url, access_key=made.id, secret_key="nope"
    )
    failure = fails(wrong)
    assert failure.kind == "auth" and "SignatureDoesNotMatch" in failure.message


@by_type("siliconflow", "volcengine", "ark", "a1111")
def test_fields_left_to_their_defaults_are_left_to_the_upstream(up):
    """Steps and guidance the client did not set are not sent: the upstream's own defaults
    apply (pixgate's are for its own models)."""
    run(up.channel(), request(defaulted=["steps", "guidance"]))
    sent = up.calls[0].json
    for key in ("num_inference_steps", "guidance_scale", "ddim_steps", "scale", "cfg_scale"):
        assert key not in sent
    assert "seed" in sent  # the seed pixgate chose is sent: the result can be reproduced
