"""OpenAI image edits and variations through the `openai` SDK: img2img, inpainting with
the OpenAI mask convention, and hostile input images."""

from __future__ import annotations

import base64
import io

import numpy as np
import openai
import pytest
from PIL import Image

from tests.conftest import GENERATIONS
from tests.images import gradient, png


def decode(item) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(item.b64_json))).convert("RGB"))


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared: each test makes its own key and reads only its own results."""
    return make_module_server()


@pytest.fixture
def sdk(server, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def test_edit_with_mask_keeps_pixels_outside_it(sdk):
    source = gradient()
    mask = Image.new("RGBA", source.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (96, 96, 160, 160))  # transparent square = repaint here
    result = sdk.images.edit(
        image=("in.png", png(source), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt="a red ball",
        model="tiny-sd",
        size="256x256",
        response_format="b64_json",
        extra_body={"num_inference_steps": 2, "seed": 3},
    )
    out = decode(result.data[0]).astype(int)
    src = np.asarray(source).astype(int)
    far = np.zeros(src.shape[:2], bool)
    far[:60, :] = True  # well outside the square and its feathered edge
    assert np.abs(out[far] - src[far]).max() <= 2
    inside = np.abs(out[110:146, 110:146] - src[110:146, 110:146]).mean()
    assert inside > 10  # the masked area was repainted


def test_edit_uses_image_alpha_when_no_mask(sdk):
    source = gradient(alpha=True)
    source.putalpha(Image.new("L", source.size, 255))
    hole = source.copy()
    hole.paste((0, 0, 0, 0), (0, 0, 64, 64))
    result = sdk.images.edit(
        image=("in.png", png(hole), "image/png"),
        prompt="x",
        model="tiny-sd",
        response_format="b64_json",
        extra_body={"num_inference_steps": 2},
    )
    out = decode(result.data[0]).astype(int)
    assert out.shape == (256, 256, 3)  # closest model size to the square input
    # kept pixels: far from the hole and clear of the explicit label (bottom-right corner)
    kept = (slice(120, 200), slice(120, 200))
    assert np.abs(out[kept] - np.asarray(source.convert("RGB"))[kept]).max() <= 2


def test_edit_without_mask_is_img2img_and_variations_work(sdk):
    source = gradient(512, 256)
    edited = sdk.images.edit(
        image=("in.png", png(source), "image/png"),
        prompt="x",
        model="tiny-sd",
        n=2,
        response_format="b64_json",
        extra_body={"num_inference_steps": 2, "strength": 0.5},
    )
    assert len(edited.data) == 2
    # tiny-sd has no 2:1 size; the nearest aspect ratio is 1024x576
    assert decode(edited.data[0]).shape == (576, 1024, 3)
    varied = sdk.images.create_variation(
        image=("in.png", png(source), "image/png"),
        model="tiny-sd",
        size="256x256",
        n=1,
        response_format="b64_json",
        extra_body={"num_inference_steps": 2},
    )
    assert decode(varied.data[0]).shape == (256, 256, 3)


def test_repeated_image_fields_are_parsed(sdk):
    img = ("in.png", png(gradient()), "image/png")
    with pytest.raises(openai.BadRequestError) as err:
        sdk.images.edit(image=[img, img], prompt="x", model="tiny-sd")
    assert "takes one image" in str(err.value)


def test_hostile_inputs_are_clear_400s(server, key):
    with server.client(key) as c:

        def edit(files, data=None):
            return c.post(
                "/v1/images/edits",
                files=files,
                data={"prompt": "x", "model": "tiny-sd", **(data or {})},
            )

        r = edit({"image": ("x.png", b"not an image", "image/png")})
        assert r.status_code == 400 and r.json()["error"]["param"] == "image"
        gif = io.BytesIO()
        Image.new("RGB", (8, 8)).save(gif, "GIF")
        r = edit({"image": ("x.gif", gif.getvalue(), "image/gif")})
        assert r.status_code == 400 and "PNG, JPEG or WebP" in r.text
        huge = io.BytesIO()
        Image.new("L", (8000, 8000)).save(huge, "PNG")  # small file, 64 Mpx
        r = edit({"image": ("big.png", huge.getvalue(), "image/png")})
        assert r.status_code == 400 and "pixels" in r.text
        r = c.post("/v1/images/edits", data={"prompt": "x"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "image"
        r = edit({"image": ("in.png", png(gradient()), "image/png")}, {"strength": "3"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "strength"
        mask = Image.new("RGBA", (10, 10))
        r = edit(
            {
                "image": ("in.png", png(gradient()), "image/png"),
                "mask": ("m.png", png(mask), "image/png"),
            }
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "mask"
        assert (
            c.post(
                GENERATIONS, json={"prompt": "x", "model": "tiny-sd", "size": "256x256"}
            ).status_code
            == 200
        )
    assert server.key_row(key).images_used == 1


def test_exif_orientation_is_honoured(sdk):
    tall = gradient(256, 512)  # stored landscape-rotated with an EXIF "rotate 90" tag
    stored = tall.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif.tobytes())
    result = sdk.images.create_variation(
        image=("in.jpg", buf.getvalue(), "image/jpeg"),
        model="tiny-sd",
        response_format="b64_json",
        extra_body={"num_inference_steps": 1},
    )
    h, w, _ = decode(result.data[0]).shape
    assert h > w  # upright: portrait, as the photo is meant to be seen


def test_generations_take_an_input_image_as_data_uri_or_url(make_server):
    server = make_server(fetch_image_allow=["127.0.0.0/8"])  # the URL below is on loopback
    key = server.create_key()
    source = gradient(256, 512)
    data_uri = "data:image/png;base64," + base64.b64encode(png(source)).decode()
    with server.client(key) as c:
        r = c.post(
            GENERATIONS,
            json={
                "model": "tiny-sd",
                "prompt": "x",
                "image": data_uri,
                "num_inference_steps": 2,
                "strength": 0.5,
            },
        )
        assert r.status_code == 200, r.text
        url = r.json()["data"][0]["url"]
        got = Image.open(io.BytesIO(c.get(url).content))
        assert got.size == (512, 1024)  # nearest tiny-sd size to a 1:2 input
        # an http(s) URL is downloaded (here: the image just made, on this server)
        r = c.post(
            GENERATIONS,
            json={
                "model": "tiny-sd",
                "prompt": "x",
                "image": url,
                "size": "256x256",
                "num_inference_steps": 2,
            },
        )
        assert r.status_code == 200, r.text
        bad = c.post(
            GENERATIONS,
            json={"model": "tiny-sd", "prompt": "x", "image": "data:image/png;base64,@@@"},
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "image"
        gone = c.post(
            GENERATIONS,
            json={"model": "tiny-sd", "prompt": "x", "image": server.url + "/files/nope.png"},
        )
        # refused with the one text every failed fetch gets, which never says what
        # answered (it said "HTTP 403" before: tests/test_ssrf.py)
        assert gone.status_code == 400 and gone.json()["error"]["param"] == "image"
        assert "could not be fetched" in gone.text and "403" not in gone.text
