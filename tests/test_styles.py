"""Styles (named prompt templates) and aspect-ratio size ids."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pixgate.spec.catalog import TINY_SD, YUECHENG_SIZES, ModelSpec, Style, size_for_ratio
from tests.conftest import generate

INK = Style(
    id="ink",
    name="Ink wash",
    template="ink wash painting of {prompt}, {brush}",
    negative_prompt="photo",
)


def test_style_apply_and_validation():
    assert INK.apply("a cat", None) == ("ink wash painting of a cat, {brush}", "photo")
    assert INK.apply("a cat", "blurry") == ("ink wash painting of a cat, {brush}", "blurry, photo")
    with pytest.raises(ValidationError):
        Style(id="x", template="no slot here")


def test_size_for_ratio():
    assert size_for_ratio(TINY_SD, "1:1") == "1024x1024"
    assert size_for_ratio(TINY_SD, "9:16") == "720x1280"
    yc = ModelSpec(name="yc", source="builtin:tiny-sd", sizes=YUECHENG_SIZES)
    assert size_for_ratio(yc, "3:4") == "960x1280"
    assert size_for_ratio(yc, "1:2") == "720x1440"
    assert size_for_ratio(yc, "16:9") is None
    assert size_for_ratio(yc, "wide") is None


def test_style_through_http(make_server):
    srv = make_server(styles=[INK])
    k = srv.create_key()
    with srv.client(k) as c:
        listed = c.get("/v1/styles").json()["data"]
        assert listed[0]["id"] == "ink" and "{prompt}" in listed[0]["template"]
        assert generate(c, style="ink").status_code == 200
        job = c.get("/v1/jobs").json()["data"][0]
        assert job["status"] == "succeeded"
        bad = generate(c, style="oil")
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "style"
        assert "ink" in bad.json()["error"]["message"]
    rows = srv.core.queue  # the stored request carries the styled prompt
    import asyncio

    stored = asyncio.run_coroutine_threadsafe(rows.get(job["id"]), srv.server_loop()).result(10)
    assert stored.request["prompt"] == "ink wash painting of x, {brush}"
    assert stored.request["negative_prompt"] == "photo"
