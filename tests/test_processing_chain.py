"""The processing chain: post-steps in order (upscale, mark, encode last), pre-steps at
admission, and Volcengine's fetch-time mark drawn by a worker, not by the API node."""

from __future__ import annotations

import asyncio
import io
import json
import time
from decimal import Decimal

import pytest
from PIL import Image, ImageChops
from sqlalchemy import select

from pixgate.db import Database, Job
from pixgate.errors import PixgateError
from pixgate.processing import postprocess
from pixgate.processing.chain import POST_STEPS, PostStep, PostTools, draw_mark, planned, run_post
from pixgate.processing.encode import encode_image
from pixgate.processing.moderation import TermList
from pixgate.processing.pre import PreContext, run_pre
from pixgate.processing.pre import planned as planned_pre
from pixgate.settings import load_settings
from pixgate.spec.catalog import VOLCENGINE_SIZES, ModelSpec
from pixgate.spec.request import GenerationRequest, Watermark
from tests.conftest import balance
from tests.volcengine_client import GET, REQ_KEY, SMALL, SUBMIT, make_key, ok, png, post

MARK = Watermark(text="pixgate", position="top-left", opacity=1)


def request(**fields) -> GenerationRequest:
    values = dict(model="m", prompt="p", width=64, height=64, n=1, seed=1, steps=1, guidance=5)
    return GenerationRequest(**{**values, **fields})


@pytest.fixture
def settings(tmp_path):
    return load_settings(None, data_dir=tmp_path / "data", blocked_terms=["forbidden"])


def _image() -> Image.Image:
    return Image.linear_gradient("L").convert("RGB").resize((64, 64))


def test_post_steps_run_upscale_then_mark_then_encode(settings):
    req = request(upscale=2, watermark=MARK, output_format="png")
    assert planned(req) == ["upscale", "mark", "encode"]
    assert planned(request()) == ["encode"]
    assert planned(request(watermark=MARK)) == ["mark", "encode"]
    done = run_post(_image(), req, settings, PostTools(), "j-0")
    assert done.notes == {"upscaler": "lanczos"}
    in_order = draw_mark(postprocess.upscale(_image(), 2), MARK, settings)
    assert done.data == encode_image(in_order, "png", settings.png_compress_level)
    swapped = postprocess.upscale(draw_mark(_image(), MARK, settings), 2)
    assert done.data != encode_image(swapped, "png", settings.png_compress_level)
    assert Image.open(io.BytesIO(done.data)).size == (128, 128)


def test_encode_is_last_and_takes_the_requests_format(settings):
    seen = []
    spy = PostStep("spy", lambda _req: True, lambda im, *_: seen.append(im.size) or im)
    done = run_post(
        _image(), request(output_format="jpeg"), settings, PostTools(), "j-0", None,
        [*POST_STEPS, spy],
    )  # fmt: skip
    assert seen == [(64, 64)]  # a step sees pixels, not bytes: encoding comes after it
    assert Image.open(io.BytesIO(done.data)).format == "JPEG"


def test_pre_steps_moderate_rewrite_then_moderate_the_rewrite(settings):
    ctx = PreContext(settings, TermList(settings.blocked_terms))
    assert planned_pre(request()) == ["moderate"]
    assert planned_pre(request(prompt_enhancement=True)) == [
        "moderate",
        "rewrite",
        "moderate_rewritten",
    ]
    req = request(prompt="a cat", prompt_enhancement=True)
    rewritten = asyncio.run(run_pre(req, ctx))  # no [rewriter]: the offline expander
    assert rewritten.prompt.startswith("a cat, ") and rewritten.original_prompt == "a cat"
    assert rewritten.rewriter == "offline"
    assert asyncio.run(run_pre(req, ctx)) == rewritten  # deterministic for the seed
    for fields, param in [
        ({"prompt": "a FORBIDDEN cat"}, "prompt"),
        ({"negative_prompt": "forbidden"}, "negative_prompt"),
        ({"watermark": Watermark(text="forbidden")}, "watermark"),
    ]:
        with pytest.raises(PixgateError) as caught:
            asyncio.run(run_pre(request(**fields), ctx))
        assert caught.value.code == "content_refused" and caught.value.param == param
        assert caught.value.args_["term"] == "forbidden"


# --- the fetch-time mark is a worker's job ---------------------------------------------------
FAKE_VOLC = ModelSpec(
    name=REQ_KEY,
    source="fake:",
    price=Decimal("0.2"),
    sizes=VOLCENGINE_SIZES,
    size_range=(256, 768),
    default_size="512x512",
)


def _jobs(settings) -> list[Job]:
    async def go():
        db = Database(settings.db_url)
        try:
            async with db.read() as s:
                return list((await s.scalars(select(Job).order_by(Job.created_at))).all())
        finally:
            await db.dispose()

    return asyncio.run(go())


def test_a_fetch_time_mark_is_drawn_by_a_worker_not_the_api_node(make_server):
    """An API-only node and a worker node share the database and files: the API node
    queues a free mark job and the worker draws it; the response is the marked copy."""
    api = make_server(models=[FAKE_VOLC], run_workers=False, demo=False)
    worker = make_server(models=[FAKE_VOLC], demo=False)
    key = make_key(api, credit="1")
    task_id = ok(post(api, SUBMIT, {**SMALL, "seed": 3}, key.key))["task_id"]
    body = {"req_key": REQ_KEY, "task_id": task_id}
    deadline = time.monotonic() + 60
    while (plain := ok(post(api, GET, body, key.key)))["status"] != "done":
        assert time.monotonic() < deadline, plain
        time.sleep(0.1)
    logo = {"add_logo": True, "position": 3, "language": 1, "opacity": 1}
    marked = ok(post(api, GET, {**body, "req_json": json.dumps({"logo_info": logo})}, key.key))
    original, copy = png(plain["binary_data_base64"][0]), png(marked["binary_data_base64"][0])
    diff = ImageChops.difference(original, copy).getbbox()
    assert diff is not None and diff[0] > 256 // 2 and diff[3] < 256 // 2  # top-right only
    generation, mark = _jobs(api.settings)
    assert (mark.kind, mark.status, mark.n_succeeded) == ("mark", "succeeded", 1)
    assert mark.cost_minor == 0 and mark.user_id is None  # free, not a task, not usage
    assert mark.worker_id == worker.core.worker.id  # drawn there
    assert generation.n_succeeded == 1
    assert balance(api, key.key) == Decimal("0.8")  # the generation was charged, once
