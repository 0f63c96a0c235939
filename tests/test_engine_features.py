"""LoRA, hires fix, dynamic batching and the model cache, through the real engine."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixgate.backends.diffusers.builtin import ensure_builtin
from pixgate.backends.diffusers.engine import DiffusersEngine
from pixgate.backends.diffusers.loader import PipelineCache, pipeline_bytes
from pixgate.queue.worker import Worker
from pixgate.spec.catalog import TINY_SD
from pixgate.spec.request import GenerationRequest
from tests.conftest import generate


def pixels(response) -> np.ndarray:
    body = response.json()
    assert response.status_code == 200, body
    return np.stack(
        [
            np.asarray(Image.open(io.BytesIO(base64.b64decode(d["b64_json"]))).convert("RGB"))
            for d in body["data"]
        ]
    ).astype(int)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory) -> Path:
    """A LoRA for tiny-sd's UNet attention with random (non-zero) weights, saved the way
    diffusers' training scripts save theirs."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from pixgate.backends.diffusers.builtin import build_tiny_sd

    pipe = build_tiny_sd()
    torch.manual_seed(1)
    pipe.unet.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            init_lora_weights=False,
            target_modules=["to_k", "to_q", "to_v", "to_out.0"],
        )
    )
    folder = tmp_path_factory.mktemp("lora")
    StableDiffusionPipeline.save_lora_weights(
        folder,
        # x4 on both factors: a strong effect, visible after a single step
        unet_lora_layers={k: v * 4 for k, v in get_peft_model_state_dict(pipe.unet).items()},
        weight_name="sketch.safetensors",
    )
    return folder / "sketch.safetensors"


def test_lora_changes_the_output_and_scale_zero_does_not(make_server, lora_file):
    server = make_server(
        loras=[{"name": "sketch", "path": str(lora_file), "description": "test LoRA"}]
    )
    client = server.client(server.create_key())
    common = {"seed": 11, "response_format": "b64_json"}
    base = pixels(generate(client, **common))
    with_lora = pixels(generate(client, lora="sketch", **common))
    half = pixels(generate(client, lora=[{"name": "sketch", "scale": 0.5}], **common))
    zero = pixels(generate(client, lora="sketch:0", **common))
    again = pixels(generate(client, **common))  # adapters switched off again afterwards
    assert np.abs(with_lora - base).mean() > 1
    assert 0 < np.abs(half - base).mean() < np.abs(with_lora - base).mean()
    assert np.array_equal(zero, base)
    assert np.array_equal(again, base)

    listed = client.get("/v1/loras").json()["data"]
    assert listed[0]["name"] == "sketch" and "tiny-sd" in listed[0]["models"]
    bad = generate(client, lora="nope")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "lora" and "sketch" in bad.json()["error"]["message"]
    bad_scale = generate(client, lora="sketch:9")
    assert bad_scale.status_code == 400 and bad_scale.json()["error"]["param"] == "lora"


def test_lora_that_does_not_fit_the_model_is_a_clear_400(make_server, tmp_path):
    import torch
    from safetensors.torch import save_file

    junk = tmp_path / "junk.safetensors"
    save_file({"unet.nothing.lora_A.weight": torch.zeros(2, 2)}, str(junk))
    server = make_server(loras=[{"name": "junk", "path": str(junk)}])
    client = server.client(server.create_key(credit="10"))
    before = client.get("/v1/dashboard/billing/credit_grants").json()["total_available"]
    r = generate(client, lora="junk")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "lora"
    after = client.get("/v1/dashboard/billing/credit_grants").json()["total_available"]
    assert before == after


def test_hires_fix_outputs_the_larger_size(server, key):
    client = server.client(key)
    first = pixels(generate(client, hires=True, seed=5, response_format="b64_json"))
    assert first.shape[1:3] == (512, 512)
    again = pixels(generate(client, hires=True, seed=5, response_format="b64_json"))
    assert np.array_equal(first, again)  # deterministic like any other request
    r = generate(client, hires={"scale": 1.5, "strength": 0.4, "steps": 2}, seed=5)
    assert r.status_code == 200, r.text
    image = Image.open(io.BytesIO(client.get(r.json()["data"][0]["url"]).content))
    assert image.size == (384, 384)
    too_big = generate(client, size="1024x1024", hires={"scale": 4})
    assert too_big.status_code == 400 and too_big.json()["error"]["param"] == "hires"
    bad = generate(client, hires={"strength": 0})
    assert bad.status_code == 400 and "hires" in bad.json()["error"]["param"]


def _request(prompt: str, seed: int, n: int = 1, negative: str | None = None) -> GenerationRequest:
    return GenerationRequest(
        model="tiny-sd",
        prompt=prompt,
        negative_prompt=negative,
        width=256,
        height=256,
        n=n,
        seed=seed,
        steps=3,
        guidance=7.5,
    )


def test_batched_results_equal_unbatched_ones(models_dir):
    engine = DiffusersEngine(PipelineCache(models_dir))
    reqs = [
        _request("a red fox", 1, n=2),
        _request("一只猫", 7, negative="blurry"),
        _request("a lighthouse at night", 99),
    ]
    batched = engine.generate_batch(reqs, TINY_SD)
    for req, result in zip(reqs, batched, strict=True):
        alone = engine.generate(req, TINY_SD)
        assert len(result.images) == req.n
        for a, b in zip(result.images, alone.images, strict=True):
            diff = np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int))
            # Same seeds, same pixels: a batch may only change float rounding (see README).
            assert diff.max() <= 2, diff.max()
    # the images really are different from each other (seeds and prompts differ)
    first, second = (np.asarray(r.images[0]).astype(int) for r in batched[:2])
    assert np.abs(first - second).mean() > 1


def test_worker_batches_compatible_queued_jobs(make_server, models_dir):
    """Jobs queued while no worker runs are claimed together when it starts: compatible
    ones share one pass, an incompatible one (other size) runs on its own."""
    spec = TINY_SD.model_copy(update={"max_batch": 8})
    server = make_server(
        run_workers=False, models=[spec.model_dump()], default_model="tiny-sd", explicit_label=False
    )
    key = server.create_key(credit="100")
    core = server.core
    loop = server.server_loop()

    async def scenario():
        caller = await core.identity.authenticate(key)
        reqs = [_request(f"prompt {i}", 100 + i, n=1 + i % 2) for i in range(4)]
        odd = _request("other size", 5).model_copy(update={"width": 512, "height": 512})
        ids = [await core.admission.submit(caller, r) for r in [*reqs, odd]]
        core.worker = Worker(core.settings, core.catalog, core.queue, core.storage, core.metrics)
        core.worker.start()
        results = [await core.tasks.wait_result(job_id) for job_id in ids]
        await core.worker.stop(10)
        return reqs, results

    reqs, results = asyncio.run_coroutine_threadsafe(scenario(), loop).result(timeout=300)
    metrics = server.client().get("/metrics").text
    count = [ln for ln in metrics.splitlines() if ln.startswith("pixgate_batch_images_count")]
    assert count and float(count[0].split()[-1]) >= 1, count
    engine = DiffusersEngine(PipelineCache(models_dir))
    for req, result in zip(reqs, results[:-1], strict=True):
        assert [i.seed for i in result.images] == req.image_seeds()
        alone = engine.generate(req, TINY_SD).images
        for image, expected in zip(result.images, alone, strict=True):
            got = np.asarray(Image.open(core.storage.root / image.path).convert("RGB"))
            assert np.abs(got.astype(int) - np.asarray(expected).astype(int)).max() <= 2
    assert len(results[-1].images) == 1


def test_cache_unloads_least_recently_used_beyond_the_memory_budget(models_dir, tmp_path):
    import shutil

    source = ensure_builtin("tiny-sd", models_dir)
    copy = tmp_path / "copy-of-tiny-sd"
    shutil.copytree(source, copy)
    first = TINY_SD
    second = TINY_SD.model_copy(update={"name": "copy", "source": str(copy)})
    probe = PipelineCache(models_dir)
    size = pipeline_bytes(probe.get(first))
    cache = PipelineCache(models_dir, max_loaded=5, ram_budget_gb=size * 1.5 / 1024**3)
    cache.get(first)
    cache.get_for_mode(first, "img2img")
    cache.get(second)
    assert [k[0] for k, _ in cache.loaded()] == [str(copy)]
    cache.get(first)  # switching back loads it again, no restart needed
    assert [k[0] for k, _ in cache.loaded()] == [first.source]
    by_count = PipelineCache(models_dir, max_loaded=1)
    by_count.get(first)
    by_count.get(second)
    assert len(by_count.loaded()) == 1


def test_per_model_dtype(models_dir):
    import torch

    spec = TINY_SD.model_copy(update={"dtype": "bfloat16", "device": "cpu"})
    cache = PipelineCache(models_dir)
    pipe = cache.get(spec)
    assert pipe.unet.dtype == torch.bfloat16
    assert cache.key(spec)[1:] == ("cpu", "torch.bfloat16")
    result = DiffusersEngine(cache).generate(_request("x", 1), spec)
    assert result.images[0].size == (256, 256)


def test_model_options_are_validated():
    with pytest.raises(ValueError, match="device"):
        TINY_SD.model_validate({**TINY_SD.model_dump(), "device": "tpu"})
    with pytest.raises(ValueError, match="max_batch"):
        TINY_SD.model_validate({**TINY_SD.model_dump(), "max_batch": 0})


def test_loads_in_two_caches_at_once_leave_torch_as_it_was(models_dir):
    """Two workers in one process (two nodes in a test) may load at the same moment. While
    diffusers builds a model on the meta device it patches torch.nn.Module process-wide;
    overlapping loads once restored each other's patch, so that every module built after
    (the next model load included) came out on the meta device."""
    import threading

    import torch

    errors: list[BaseException] = []

    def load() -> None:
        try:
            PipelineCache(models_dir).get(TINY_SD)
        except BaseException as exc:  # reported below, from the test's thread
            errors.append(exc)

    for _ in range(3):
        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert torch.nn.Linear(2, 2).weight.device.type == "cpu"
