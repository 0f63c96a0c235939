"""The SDXL, SD3 and FLUX pipeline families: tiny random-weight builds through the real
HTTP API (txt2img, img2img, inpaint), saved to disk and loaded back, demo-mode mapping of
the seed names, and the full-size benchmark architectures checked on the meta device."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import openai
import pytest
import torch
from PIL import Image

from pixgate.backends.diffusers.arch import build_sd15_arch, build_sdxl_arch, parameter_counts
from pixgate.backends.diffusers.builtin import BUILDERS, ensure_builtin
from pixgate.backends.diffusers.loader import PipelineCache
from pixgate.spec.catalog import TINY_MODELS, Catalog
from tests.conftest import GENERATIONS, generate
from tests.images import gradient, png

FAMILIES = {
    "tiny-sdxl": "StableDiffusionXLPipeline",
    "tiny-sd3": "StableDiffusion3Pipeline",
    "tiny-flux": "FluxPipeline",
}


@pytest.fixture(scope="module")
def server(make_module_server):
    """Shared: each test makes its own key and reads only its own results."""
    return make_module_server()


def pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(int)


def images(response) -> list[np.ndarray]:
    assert response.status_code == 200, response.text
    return [pixels(item["b64_json"]) for item in response.json()["data"]]


@pytest.mark.parametrize("model", list(FAMILIES))
def test_family_txt2img_img2img_and_inpaint_over_http(server, key, model):
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
    common = {"model": model, "num_inference_steps": 2, "response_format": "b64_json"}
    with server.client(key) as c:
        (a,) = images(generate(c, **common, seed=7))
        (b,) = images(generate(c, **common, seed=7))
        (other,) = images(generate(c, **common, seed=8))
        assert a.shape == (256, 256, 3)
        assert np.array_equal(a, b)  # same seed, same pixels
        assert np.abs(a - other).mean() > 1  # another seed, another image
        (wide,) = images(generate(c, **{**common, "size": "768x512", "num_inference_steps": 1}))
        assert wide.shape == (512, 768, 3)

        # img2img: an input image as a data URI on /v1/images/generations
        source = gradient()
        data_uri = "data:image/png;base64," + base64.b64encode(png(source)).decode()
        edit = {**common, "prompt": "x", "image": data_uri, "strength": 0.6, "seed": 3}
        first = images(c.post(GENERATIONS, json=edit))[0]
        again = images(c.post(GENERATIONS, json=edit))[0]
        assert first.shape == (256, 256, 3)  # the requested size, not the pipeline's 1024
        assert np.array_equal(first, again)
        assert np.abs(first - np.asarray(source).astype(int)).mean() > 1

    # inpaint: the openai SDK's images.edit with an OpenAI-convention mask
    mask = Image.new("RGBA", source.size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (96, 96, 160, 160))  # transparent square = repaint here
    result = sdk.images.edit(
        image=("in.png", png(source), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt="a red ball",
        model=model,
        size="256x256",
        response_format="b64_json",
        extra_body={"num_inference_steps": 2, "seed": 3},
    )
    out = pixels(result.data[0].b64_json)
    src = np.asarray(source).astype(int)
    assert np.abs(out[:60] - src[:60]).max() <= 2  # well outside the square: kept
    assert np.abs(out[110:146, 110:146] - src[110:146, 110:146]).mean() > 10  # repainted


def test_demo_seed_names_run_their_family_and_flow_samplers(server, key):
    with server.client(key) as c:
        models = {m["id"]: m for m in c.get("/v1/models").json()["data"]}
        assert {"tiny-sd", *FAMILIES} <= set(models)
        assert models["FLUX.1-schnell"]["source"] == "builtin:tiny-flux"
        assert models["stable-diffusion-3-5-large"]["source"] == "builtin:tiny-sd3"
        assert models["Yuecheng-VisGen/VisGen"]["source"] == "builtin:tiny-sd"
        assert models["tiny-flux"]["random_weights"] is True
        assert models["tiny-flux"]["demo"] is False

        # the demo FLUX.1-schnell is tiny-flux: same seed, same pixels
        req = {"size": "768x512", "num_inference_steps": 1, "seed": 5}
        req["response_format"] = "b64_json"
        demo = images(generate(c, **req, model="FLUX.1-schnell"))[0]
        tiny = images(generate(c, **req, model="tiny-flux"))[0]
        assert np.array_equal(demo, tiny)

        # flow-matching models take the flow-matching samplers, and only those
        flow = {"model": "tiny-flux", "num_inference_steps": 3, "seed": 9}
        flow["response_format"] = "b64_json"
        euler = images(generate(c, **flow, sampler="Euler"))[0]
        heun = images(generate(c, **flow, sampler="Heun"))[0]  # FLUX passes its own sigmas
        assert np.abs(euler - heun).mean() > 0.1
        sd3_heun = generate(c, **{**flow, "model": "tiny-sd3"}, sampler="Heun")
        assert sd3_heun.status_code == 200, sd3_heun.text
        wrong = generate(c, **flow, sampler="DPM++ 2M Karras")
        assert wrong.status_code == 400, wrong.text
        assert "flow-matching" in wrong.text and "Euler, Heun" in wrong.text


def test_catalog_lists_the_tiny_families_with_or_without_demo():
    for demo in (True, False):
        names = Catalog.build([], demo=demo).names()
        assert names[:4] == ["tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-flux"]
    assert [m.source for m in TINY_MODELS] == [f"builtin:{n}" for n in ("tiny-sd", *FAMILIES)]


def _call(pipe, seed: int = 11) -> np.ndarray:
    with torch.inference_mode():
        out = pipe(
            prompt="a lighthouse 灯塔",
            num_inference_steps=2,
            guidance_scale=5.0,
            width=256,
            height=256,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
        )
    return out.images[0]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_saved_build_loads_back_and_draws_the_same_pixels(tmp_path, name):
    folder = ensure_builtin(name, tmp_path)
    assert ensure_builtin(name, tmp_path) == folder  # built once
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == FAMILIES[name]
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 20 * 2**20  # tiny: a few MB

    spec = next(m for m in TINY_MODELS if m.name == name)
    loaded = PipelineCache(tmp_path).get(spec)
    assert type(loaded).__name__ == FAMILIES[name]
    fresh = BUILDERS[name]()
    fresh.set_progress_bar_config(disable=True)
    assert np.array_equal(_call(loaded), _call(fresh))  # deterministic build, exact reload

    # T5 tokenizers come back with their byte fallback: any text, no <unk>
    t5 = {"tiny-sd3": "tokenizer_3", "tiny-flux": "tokenizer_2"}.get(name)
    if t5:
        ids = getattr(loaded, t5)("灯塔 é").input_ids
        assert 2 not in ids and len(ids) == 1 + 6 + 1 + 2 + 1  # ▁ 灯塔 ▁ é </s>


def test_full_size_architectures_on_the_meta_device():
    sd15 = parameter_counts(build_sd15_arch(device="meta"))
    assert sd15 == {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
    sdxl = parameter_counts(build_sdxl_arch(device="meta"))
    assert sdxl == {
        "unet": 2_567_463_684,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    }
    pipe = build_sdxl_arch(device="meta")
    assert pipe.unet.device.type == "meta" and pipe.text_encoder_2.device.type == "meta"
    assert pipe.unet.config.cross_attention_dim == 2048
    assert {"sd15-arch", "sdxl-arch"} <= set(BUILDERS)


@pytest.mark.slow
def test_full_size_build_in_half_precision_on_a_device():
    pipe = build_sd15_arch(device="cpu", dtype=torch.float16)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert {p.dtype for p in module.parameters()} == {torch.float16}
        assert {p.device.type for p in module.parameters()} == {"cpu"}
    assert sum(parameter_counts(pipe).values()) == 1_066_235_307
