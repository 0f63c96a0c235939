"""The Volcengine / Jimeng dialect (seed 002) against live servers: the seed's own sample,
the official `volcengine` SDK (sync and async), every field wired, every error code."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from decimal import Decimal

import httpx
import pytest
from PIL import Image, ImageChops
from volcengine.visual.VisualService import VisualService

from pixgate.accounts import keys
from pixgate.api.dialects.volcengine_render import business_code, go_duration
from pixgate.errors import PixgateError
from pixgate.settings import load_settings
from pixgate.spec.catalog import VOLCENGINE_SIZES, ModelSpec
from tests.conftest import balance, free_port, start_server
from tests.volcengine_client import (
    CV,
    GET,
    REQ_KEY,
    SMALL,
    SUBMIT,
    business,
    gateway,
    make_key,
    ok,
    png,
    post,
    sdk,
)

BLOCKED = "forbiddenword"

# seed 002's sample request body, verbatim
SEED_BODY = {
    "req_key": "high_aes_general_v21_L",
    "prompt": "千军万马",
    "model_version": "general_v2.1_L",
    "req_schedule_conf": "general_v20_9B_pe",
    "llm_seed": -1,
    "seed": -1,
    "scale": 3.5,
    "ddim_steps": 25,
    "width": 512,
    "height": 512,
    "use_pre_llm": True,
    "use_sr": True,
    "return_url": True,
    "logo_info": {
        "add_logo": False,
        "position": 0,
        "language": 0,
        "opacity": 0.3,
        "logo_text_content": "string",
    },
}


@pytest.fixture(scope="module")
def volc(tmp_path_factory, models_dir):
    """One demo server for the module, with a blocked term and a model that cannot load."""
    broken = ModelSpec(
        name="broken_req_key",
        source="/nonexistent/model",
        sizes=VOLCENGINE_SIZES,
        default_size="512x512",
        max_steps=200,
    )
    settings = load_settings(
        None,
        data_dir=tmp_path_factory.mktemp("volc") / "data",
        models_path=models_dir,
        port=free_port(),
        demo=True,
        log_level="WARNING",
        sweep_interval_seconds=3600,
        blocked_terms=[BLOCKED],
        models=[broken],
        unauthenticated_per_ip_per_minute=1000,
    )
    running = start_server(settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def vkey(volc) -> keys.CreatedKey:
    return make_key(volc, with_secret=True)


@pytest.fixture(scope="module")
def unlabelled(volc) -> keys.CreatedKey:
    """A key whose images carry no explicit label unless the request asks for a logo."""
    return make_key(volc, with_secret=True, explicit_label=False)


# --- the seed's sample and the official SDK ------------------------------------------------
@pytest.mark.slow  # the sample asks for 25 steps at 512x512, then 2x super-resolution
def test_seed_sample_body_verbatim(volc, vkey):
    data = ok(post(volc, CV, SEED_BODY, vkey.key, **{"Content-Type": "application/json"}))
    assert len(data["binary_data_base64"]) == 1
    assert png(data["binary_data_base64"][0]).size == (1024, 1024)  # use_sr doubles 512
    rephrased = data["rephraser_result"]  # use_pre_llm: the offline expander's rewrite
    assert rephrased.startswith("千军万马，") and len(rephrased) > len("千军万马，")
    assert data["algorithm_base_resp"] == {"status_code": 0, "status_message": "Success"}
    assert {"pe_result", "predict_tags_result", "request_id"} <= set(data)
    got = httpx.get(data["image_urls"][0])
    assert got.status_code == 200 and Image.open(io.BytesIO(got.content)).size == (1024, 1024)
    # the seed's curl leaves Action and Version empty: /volcv fixes them
    small = {**SEED_BODY, "width": 256, "height": 256, "ddim_steps": 2, "use_sr": False}
    data = ok(post(volc, "/volcv?Action&Version", small, vkey.key))
    assert png(data["binary_data_base64"][0]).size == (256, 256)


def test_sdk_cv_process(volc, vkey):
    reply = sdk(volc, vkey.id, vkey.secret).cv_process({**SMALL, "return_url": True})
    assert reply["code"] == 10000, reply
    assert png(reply["data"]["binary_data_base64"][0]).size == (256, 256)
    url = reply["data"]["image_urls"][0]
    assert Image.open(io.BytesIO(httpx.get(url).content)).size == (256, 256)
    reply = sdk(volc, vkey.id, vkey.secret).cv_process({**SMALL, "height": 320})
    assert reply["data"]["image_urls"] is None  # return_url false
    assert png(reply["data"]["binary_data_base64"][0]).size == (256, 320)


def wait_finished(server, task_id: str) -> None:
    """Wait through the core for the job to finish, so that the SDK's first fetch finds it
    done: repeating an identical signed fetch needs a new second of X-Date (see poll)."""
    future = asyncio.run_coroutine_threadsafe(
        server.core.queue.wait(task_id, timeout=120), server.server_loop()
    )
    assert future.result(130) is not None


def poll(service: VisualService, task_id: str, req_json: dict | None = None) -> dict:
    form = {"req_key": REQ_KEY, "task_id": task_id}
    if req_json is not None:
        form["req_json"] = json.dumps(req_json)
    for _ in range(120):
        reply = service.cv_sync2async_get_result(dict(form))
        assert reply["code"] == 10000, reply
        if reply["data"]["status"] not in ("in_queue", "generating"):
            return reply
        time.sleep(1.05)  # X-Date counts seconds: identical requests must differ in it
    raise AssertionError("task did not finish")


def test_sdk_async_pair(volc, vkey):
    service = sdk(volc, vkey.id, vkey.secret)
    submitted = service.cv_sync2async_submit_task({**SMALL, "use_sr": True, "seed": 7})
    assert submitted["code"] == 10000, submitted
    task_id = submitted["data"]["task_id"]
    wait_finished(volc, task_id)
    done = poll(service, task_id, {"return_url": True})
    assert done["data"]["status"] == "done"
    image = png(done["data"]["binary_data_base64"][0])
    assert image.size == (512, 512)
    linked = httpx.get(done["data"]["image_urls"][0]).content
    assert Image.open(io.BytesIO(linked)).convert("RGB").tobytes() == image.tobytes()
    # the mark is chosen when fetching: a marked copy, in the corner asked for
    marked = poll(service, task_id, {"logo_info": {"add_logo": True, "position": 3, "language": 1}})
    copy = png(marked["data"]["binary_data_base64"][0])
    assert marked["data"]["image_urls"] is None  # submit's return_url: false
    assert _changed(image, copy) == {"top-right"}
    # both files carry a valid TC260 label: the copy is new pixels, labelled as such
    from pixgate.processing.label import inspect_file, label_key

    signing = label_key(volc.core._server_secret)
    for b64 in (done, marked):
        seen = inspect_file(base64.b64decode(b64["data"]["binary_data_base64"][0]), signing)
        assert seen.verdict == "valid", seen.reason
    # unknown task, another req_key's task
    missing = service.cv_sync2async_get_result({"req_key": REQ_KEY, "task_id": "nope"})
    assert missing["code"] == 10000 and missing["data"]["status"] == "not_found"
    other = {"req_key": "jimeng_high_aes_general_v21_L", "task_id": task_id}
    assert service.cv_sync2async_get_result(other)["data"]["status"] == "not_found"


def test_async_task_of_another_account_is_not_found(volc, vkey):
    data = ok(post(volc, SUBMIT, SMALL, vkey.key))
    stranger = make_key(volc)
    body = {"req_key": REQ_KEY, "task_id": data["task_id"]}
    assert ok(post(volc, GET, body, stranger.key))["status"] == "not_found"


# --- fields wired to the request -----------------------------------------------------------
def test_use_sr_doubles_and_sizes_round_to_the_grid(volc, vkey):
    data = ok(post(volc, CV, {**SMALL, "height": 320, "use_sr": True}, vkey.key))
    assert png(data["binary_data_base64"][0]).size == (512, 640)
    data = ok(post(volc, CV, {**SMALL, "width": 300, "height": 259}, vkey.key))
    assert png(data["binary_data_base64"][0]).size == (304, 256)


# corners as fractions of the image: (left, top, right, bottom)
CORNERS = {
    "top-left": (0, 0, 0.43, 0.16),
    "top-right": (0.57, 0, 1, 0.16),
    "bottom-left": (0, 0.84, 0.43, 1),
    "bottom-right": (0.57, 0.84, 1, 1),
}


def _changed(a: Image.Image, b: Image.Image) -> set[str]:
    """The corners where `b` differs from `a`."""
    diff = ImageChops.difference(a, b)
    w, h = a.size
    changed = set()
    for name, (left, top, right, bottom) in CORNERS.items():
        box = (round(left * w), round(top * h), round(right * w), round(bottom * h))
        if diff.crop(box).getbbox() is not None:
            changed.add(name)
    return changed


@pytest.mark.parametrize(
    ("position", "corner"), [(0, "bottom-right"), (1, "bottom-left"), (2, "top-left")]
)
def test_logo_info_marks_the_chosen_corner(volc, unlabelled, position, corner):
    plain = {**SMALL, "seed": 1234}
    base = png(ok(post(volc, CV, plain, unlabelled.key))["binary_data_base64"][0])
    logo = {"add_logo": True, "position": position, "language": 1, "opacity": 1}
    marked = ok(post(volc, CV, {**plain, "logo_info": logo}, unlabelled.key))
    assert _changed(base, png(marked["binary_data_base64"][0])) == {corner}


def test_seed_and_scale_and_steps_reach_the_job(volc, vkey):
    body = {**SMALL, "seed": 99, "scale": 7.5, "ddim_steps": 3, "use_pre_llm": False}
    task_id = ok(post(volc, SUBMIT, body, vkey.key))["task_id"]
    job = asyncio.run_coroutine_threadsafe(volc.core.queue.get(task_id), volc.server_loop())
    request = job.result(timeout=30).request
    assert request["model"] == REQ_KEY and request["seed"] == 99
    assert (request["steps"], request["guidance"], request["prompt_enhancement"]) == (3, 7.5, False)
    assert request["upscale"] == 1
    # no logo_info: the deployment's explicit AI-generated label (on by default)
    assert request["watermark"] == {"text": "AI生成", "position": "bottom-right", "opacity": 0.85}


# --- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patch", "param", "words"),
    [
        ({"width": 1000}, "width", "between 256 and 768"),
        ({"height": 255}, "height", "between 256 and 768"),
        ({"scale": 10.5}, "scale", "between 1 and 10"),
        ({"ddim_steps": 0}, "ddim_steps", "between 1 and 200"),
        ({"ddim_steps": 201}, "ddim_steps", "between 1 and 200"),
        ({"seed": -2}, "seed", "between -1 and"),
        ({"llm_seed": -5}, "llm_seed", "between -1 and"),
        ({"prompt": "x" * 801}, "prompt", "1 to 800 characters"),
        ({"use_sr": "sometimes"}, "use_sr", "true or false"),
        ({"logo_info": {"position": 4}}, "logo_info.position", "between 0 and 3"),
        ({"logo_info": {"language": 2}}, "logo_info.language", "between 0 and 1"),
        ({"logo_info": {"opacity": 1.5}}, "logo_info.opacity", "between 0 and 1"),
        ({"logo_info": {"colour": "red"}}, "logo_info.colour", "Unknown parameter"),
        ({"logo_info": "yes"}, "logo_info", "JSON object"),
        ({"req_key": "no_such_model"}, "req_key", "high_aes_general_v21_L"),
        ({"model_version": "general_v3.0"}, "model_version", "general_v2.1_L"),
        ({"req_schedule_conf": "fast"}, "req_schedule_conf", "general_v20_9B_pe"),
        ({"negative_prompt": "blurry"}, "negative_prompt", "Unknown parameter"),
    ],
)
def test_parameter_errors_name_field_and_range(volc, vkey, patch, param, words):
    meta = gateway(post(volc, CV, {**SMALL, **patch}, vkey.key), 400, "InvalidParameter")
    assert meta["Action"] == "CVProcess" and meta["Version"] == "2022-08-31"
    assert f"'{param}'" in meta["Error"]["Message"] and words in meta["Error"]["Message"]


def test_missing_fields_bad_json_and_chinese(volc, vkey):
    meta = gateway(post(volc, CV, {"req_key": REQ_KEY}, vkey.key), 400, "MissingParameter")
    assert meta["Error"]["CodeN"] == 100002 and "'prompt'" in meta["Error"]["Message"]
    gateway(post(volc, CV, b"{not json", vkey.key), 400, "InvalidParameter")
    zh = post(volc, CV, {**SMALL, "width": 1}, vkey.key, **{"Accept-Language": "zh-CN"})
    assert "256 到 768" in gateway(zh, 400, "InvalidParameter")["Error"]["Message"]
    bad_json = {"req_key": REQ_KEY, "task_id": "x", "req_json": "{oops"}
    assert (
        "'req_json'"
        in gateway(post(volc, GET, bad_json, vkey.key), 400, "InvalidParameter")["Error"]["Message"]
    )
    nested = {"req_key": REQ_KEY, "task_id": "x", "req_json": '{"logo_info": {"position": 9}}'}
    message = gateway(post(volc, GET, nested, vkey.key), 400, "InvalidParameter")["Error"]
    assert "'req_json.logo_info.position'" in message["Message"]


def test_action_and_version(volc, vkey):
    meta = gateway(post(volc, "/", SMALL, vkey.key), 400, "MissingParameter")
    assert meta["Error"]["CodeN"] == 100002 and "Action" in meta["Error"]["Message"]
    meta = gateway(
        post(volc, "/?Action=CVFly&Version=2022-08-31", SMALL, vkey.key),
        404,
        "InvalidActionOrVersion",
    )
    assert meta["Error"]["CodeN"] == 100008 and meta["Action"] == "CVFly"
    gateway(
        post(volc, "/?Action=CVProcess&Version=2020-01-01", SMALL, vkey.key),
        404,
        "InvalidActionOrVersion",
    )
    gateway(httpx.get(volc.url + "/volcv"), 405, "MethodNotAllowed")


def test_bearer_auth_errors(volc):
    meta = gateway(post(volc, CV, SMALL), 401, "MissingAuthenticationToken")
    assert meta["Error"]["CodeN"] == 100003
    meta = gateway(post(volc, CV, SMALL, "sk-not-a-key"), 401, "InvalidAccessKey")
    assert meta["Error"]["CodeN"] == 100009
    limited = make_key(volc, allowed_models=["tiny-sd"])
    meta = gateway(post(volc, CV, SMALL, limited.key), 403, "AccessDenied")
    assert meta["Error"]["CodeN"] == 100013


def test_refused_text_is_50412_and_refused_logo_text_50413(volc, vkey):
    body = business(post(volc, CV, {**SMALL, "prompt": f"a {BLOCKED}"}, vkey.key), 400, 50412)
    assert body["message"].startswith("Text Risk Not Pass") and body["data"] is None
    logo = {"add_logo": True, "logo_text_content": BLOCKED.upper()}
    body = business(post(volc, CV, {**SMALL, "logo_info": logo}, vkey.key), 400, 50413)
    assert body["message"].startswith("Post Text Risk Not Pass")
    # the same refusal on the async pair, at submit and at fetch time
    business(post(volc, SUBMIT, {**SMALL, "prompt": BLOCKED}, vkey.key), 400, 50412)
    task_id = ok(post(volc, SUBMIT, SMALL, vkey.key))["task_id"]
    req_json = json.dumps({"logo_info": {"add_logo": True, "logo_text_content": BLOCKED}})
    fetch = {"req_key": REQ_KEY, "task_id": task_id, "req_json": req_json}
    for _ in range(120):
        r = post(volc, GET, fetch, vkey.key)
        if r.status_code != 200 or r.json()["data"]["status"] == "done":
            break
        time.sleep(0.2)
    business(r, 400, 50413)


def test_generation_failure_is_5xx_and_free(volc):
    payer = make_key(volc, credit="5")
    before = balance(volc, payer.key)
    body = business(post(volc, CV, {**SMALL, "req_key": "broken_req_key"}, payer.key), 500, 50501)
    assert body["message"].startswith("Internal RPC Error")
    assert balance(volc, payer.key) == before
    row = volc.key_row(payer.key)
    assert row.images_used == 0 and row.images_reserved == 0


def test_nothing_charged_for_errors_and_one_image_charged(volc):
    payer = make_key(volc, credit="1")
    before = Decimal(balance(volc, payer.key))
    assert before == 1
    gateway(post(volc, CV, {**SMALL, "width": 2000}, payer.key), 400, "InvalidParameter")
    business(post(volc, CV, {**SMALL, "prompt": BLOCKED}, payer.key), 400, 50412)
    gateway(
        post(volc, CV, {**SMALL, "logo_info": {"opacity": 3}}, payer.key), 400, "InvalidParameter"
    )
    assert Decimal(balance(volc, payer.key)) == before
    ok(post(volc, CV, SMALL, payer.key))
    assert before - Decimal(balance(volc, payer.key)) == Decimal("0.2")  # one image, once
    poor = make_key(volc, credit="0.1")
    body = business(post(volc, CV, SMALL, poor.key), 403, 50400)
    assert "Insufficient credit" in body["message"]


def test_qps_limit_is_50429_and_concurrency_limit_50430(make_server):
    server = make_server(
        run_workers=False,
        plans={"free": {"requests_per_second": 1}, "single": {"concurrency": 1}},
    )
    free = make_key(server, plan="free")
    ok(post(server, SUBMIT, SMALL, free.key))
    r = post(server, SUBMIT, SMALL, free.key)
    body = business(r, 429, 50429)
    assert body["message"].startswith("Request Has Reached API Limit") and r.headers["Retry-After"]
    single = make_key(server, plan="single")
    task_id = ok(post(server, SUBMIT, SMALL, single.key))["task_id"]
    body = business(post(server, CV, SMALL, single.key), 429, 50430)
    assert body["message"].startswith("Request Has Reached API Concurrent Limit")
    queued = ok(post(server, GET, {"req_key": REQ_KEY, "task_id": task_id}, single.key))
    assert queued["status"] == "in_queue" and queued["binary_data_base64"] is None
    row = server.key_row(single.key)
    assert row.images_used == 0


# --- pieces --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "param", "expected"),
    [
        ("content_refused", "prompt", 50412),
        ("content_refused", "watermark", 50413),
        ("content_refused", "image", 50411),
        ("rate_limited", None, 50429),
        ("too_many_in_flight", None, 50430),
        ("queue_full", None, 50430),
        ("generation_failed", None, 50500),
        ("internal_error", None, 50500),
        ("generation_timeout", None, 50501),
        ("insufficient_credit", None, 50400),
        ("invalid_value", "width", None),
        ("signature_mismatch", None, None),
    ],
)
def test_business_codes(code, param, expected):
    from tests.test_messages import RAISED

    found = business_code(PixgateError(code, param=param, args_=RAISED[code][1]))
    assert (found[0] if found else None) == expected


def test_time_elapsed_reads_like_volcengine():
    assert go_duration(10.887140906) == "10.887140906s"
    assert go_duration(0.036799829) == "36.799829ms"
    assert go_duration(2.0) == "2s"
    assert go_duration(0.000512) == "512µs"
