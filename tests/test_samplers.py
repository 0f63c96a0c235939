"""Sampler names as AUTOMATIC1111 users write them, per request, through the HTTP API."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pixgate.spec.samplers import SAMPLERS, find_sampler, sampler_names
from tests.conftest import generate


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared: each test makes its own key and reads only its own results."""
    return make_module_server()


def test_names_match_loosely():
    assert find_sampler("DPM++ 2M SDE (Karras)").name == "DPM++ 2M SDE Karras"
    assert find_sampler("dpm++ 2m karras").options == {"use_karras_sigmas": True}
    assert find_sampler("DPM2 (a)").scheduler == "KDPM2AncestralDiscreteScheduler"
    assert find_sampler("Euler a").scheduler == "EulerAncestralDiscreteScheduler"
    assert find_sampler("DPM fast") is None
    assert find_sampler("Euler", flow_match=True).scheduler == "FlowMatchEulerDiscreteScheduler"


@pytest.mark.slow
def test_every_sampler_generates_and_they_differ(server, key):
    pixels = {}
    with server.client(key) as c:
        for name in sampler_names():
            r = generate(c, sampler=name, size="256x256", num_inference_steps=3, seed=9)
            assert r.status_code == 200, (name, r.text)
            raw = c.get(r.json()["data"][0]["url"]).content
            pixels[name] = np.asarray(Image.open(io.BytesIO(raw))).astype(int)
        again = generate(
            c, sampler="DPM++ 2M Karras", size="256x256", num_inference_steps=3, seed=9
        )
        same = np.asarray(Image.open(io.BytesIO(c.get(again.json()["data"][0]["url"]).content)))
    assert np.array_equal(same, pixels["DPM++ 2M Karras"])  # per request, deterministic
    distinct = {arr.tobytes() for arr in pixels.values()}
    assert len(distinct) >= len(SAMPLERS) // 2  # samplers really change the result


def test_unknown_sampler_is_a_400_listing_known_ones(server, key):
    with server.client(key) as c:
        r = generate(c, sampler="DPM adaptive")
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["param"] == "sampler" and "DPM++ 2M Karras" in err["message"]
        listed = c.get("/v1/samplers").json()
        assert "Euler a" in [s["name"] for s in listed["data"]]
    assert server.key_row(key).images_used == 0


def test_a_sampler_of_the_other_family_is_refused_before_queueing(server, key):
    """FLUX and SD3 builds are known to be flow-matching: an A1111 diffusion sampler is a
    400 at admission, naming what the model takes."""
    with server.client(key) as c:
        r = generate(c, model="FLUX.1-schnell", size="1024x1024", sampler="DPM++ 2M Karras")
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["param"] == "sampler" and "does not fit" in err["message"]
        assert "Euler, Heun" in err["message"]
        flux = [m for m in c.get("/v1/models").json()["data"] if m["id"] == "FLUX.1-schnell"]
        assert flux[0]["flow_match"] is True
        assert c.get("/v1/jobs").json()["data"] == []  # nothing was queued
    assert server.key_row(key).images_used == 0


def test_sampler_does_not_leak_into_other_requests(server, key):
    with server.client(key) as c:
        plain = generate(c, size="256x256", num_inference_steps=3, seed=4)
        generate(c, sampler="DDIM", size="256x256", num_inference_steps=3, seed=4)
        plain_again = generate(c, size="256x256", num_inference_steps=3, seed=4)
        a = c.get(plain.json()["data"][0]["url"]).content
        b = c.get(plain_again.json()["data"][0]["url"]).content
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(a))), np.asarray(Image.open(io.BytesIO(b)))
    )
