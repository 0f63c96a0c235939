"""Super-resolution through spandrel: random-weight networks of real architectures
(ESRGAN, SPAN, SwinIR), saved as safetensors and loaded back the way an operator's
downloaded weights are, since no weights can be downloaded here; then a server whose
`[upscaler] model` is one of them, asked for `use_sr`."""

from __future__ import annotations

import base64
import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pixgate.processing import superres
from pixgate.processing.superres import load_upscaler
from pixgate.queue.storing import post_tools
from pixgate.settings import load_settings
from tests.volcengine_client import CV, REQ_KEY


def _arch(name: str, scale: int) -> torch.nn.Module:
    superres._spandrel()  # spandrel imports with torchvision's stand-in where it is missing
    torch.manual_seed(0)
    if name == "esrgan":
        from spandrel.architectures.ESRGAN import ESRGAN

        return ESRGAN(num_filters=8, num_blocks=1, scale=scale)
    if name == "span":
        from spandrel.architectures.SPAN import SPAN

        return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale)
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(
        upscale=scale, img_size=16, window_size=4, embed_dim=12, depths=[1], num_heads=[2],
        mlp_ratio=2, upsampler="pixelshuffledirect",
    )  # fmt: skip


def _saved(tmp_path, name: str, scale: int) -> str:
    path = tmp_path / f"{name}-x{scale}.safetensors"
    state = {k: v.contiguous() for k, v in _arch(name, scale).state_dict().items()}
    save_file(state, str(path))
    return str(path)


def _noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (height, width, len(mode)), np.uint8), mode)


@pytest.mark.parametrize(
    ("arch", "scale", "label"), [("esrgan", 2, "ESRGAN x2"), ("span", 4, "SPAN x4"),
                                 ("swinir", 2, "SwinIR x2")],
)  # fmt: skip
def test_saved_weights_load_as_their_architecture_and_upscale(tmp_path, arch, scale, label):
    upscaler = load_upscaler(_saved(tmp_path, arch, scale), "cpu")
    assert (upscaler.name, upscaler.scale, upscaler.device) == (label, scale, "cpu")
    image = _noise(40, 24)
    out = upscaler.upscale(image, 2)
    assert out.size == (80, 48) and out.mode == "RGB"
    # a network, not a resize: its output is not what Lanczos makes of the same pixels
    lanczos = np.asarray(image.resize((80, 48), Image.Resampling.LANCZOS), dtype=int)
    assert np.abs(np.asarray(out, dtype=int) - lanczos).mean() > 5


def test_tiles_join_without_seams(tmp_path):
    """A large image runs tile by tile (with overlap); the result matches one pass."""
    upscaler = load_upscaler(_saved(tmp_path, "esrgan", 2), "cpu", tile=32)
    image = _noise(100, 70)
    tiled = np.asarray(upscaler.upscale(image, 2), dtype=int)
    upscaler.tile = 4096
    whole = np.asarray(upscaler.upscale(image, 2), dtype=int)
    assert tiled.shape == whole.shape == (140, 200, 3)
    assert np.abs(tiled - whole).max() <= 2


def test_factor_other_than_the_network_scale_and_alpha_kept(tmp_path):
    x2 = load_upscaler(_saved(tmp_path, "esrgan", 2), "cpu")
    assert x2.upscale(_noise(20, 10), 4).size == (80, 40)  # the network twice
    x4 = load_upscaler(_saved(tmp_path, "span", 4), "cpu")
    rgba = _noise(20, 10, "RGBA")
    out = x4.upscale(rgba, 2)  # once, then down to x2
    assert out.size == (40, 20) and out.mode == "RGBA"


def test_bad_model_files_are_refused_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"no such file: .*missing\.safetensors"):
        load_upscaler(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    save_file({"some.weight": torch.zeros(3, 3)}, str(junk))
    with pytest.raises(ValueError, match=r"junk\.safetensors: not a model spandrel can load"):
        load_upscaler(junk)
    same_size = _saved(tmp_path, "esrgan", 1)  # a 1x restoration network
    with pytest.raises(ValueError, match="not a super-resolution network"):
        load_upscaler(same_size)


def test_no_torchvision_stand_in_is_left_behind():
    superres._spandrel()
    module = sys.modules.get("torchvision")
    assert module is None or getattr(module, "__file__", None) is not None


def test_use_sr_runs_the_configured_network(make_server, tmp_path):
    from tests.test_content_paths import FAKE_VOLC

    model = _saved(tmp_path, "esrgan", 2)
    srv = make_server(
        models=[FAKE_VOLC], demo=False, upscaler={"model": model, "device": "cpu", "tile": 128}
    )
    key = srv.create_key(credit="5")
    body = {"req_key": REQ_KEY, "prompt": "a fox", "width": 256, "height": 256,
            "use_pre_llm": False}  # fmt: skip
    with srv.client(key) as c:
        up = c.post(CV, json={**body, "use_sr": True}).json()
        plain = c.post(CV, json={**body, "use_sr": False}).json()
    assert up["code"] == 10000, up
    assert up["data"]["upscaler"] == "ESRGAN x2" and "upscaler" not in plain["data"]
    image = Image.open(io.BytesIO(base64.b64decode(up["data"]["binary_data_base64"][0])))
    assert image.size == (512, 512)


def test_a_worker_with_a_bad_upscaler_model_does_not_start(tmp_path):
    """The worker loads its tools before it claims a job: a wrong path stops it there,
    with the path in the message, rather than failing every use_sr job later."""
    settings = load_settings(
        None, data_dir=tmp_path / "data", upscaler={"model": str(tmp_path / "nope.pth")}
    )
    with pytest.raises(ValueError, match=r"no such file: .*nope\.pth"):
        post_tools(settings)
