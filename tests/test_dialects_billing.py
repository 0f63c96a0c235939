"""One key, every dialect: each charges the same account once per image it returns, and
Yuecheng's `api_usage` and the credit summary agree about it."""

from __future__ import annotations

import json
import time
from decimal import Decimal

from pixgate.spec.catalog import ModelSpec, stable_id
from tests.conftest import balance
from tests.images import gradient_png

PRICE = Decimal("0.1")
# One cheap model under every name the dialects default to or select; billing is the
# subject, so the fake backend draws (each dialect's own tests run the real engine).
NAMES = ["tiny-256", "Yuecheng-VisGen/VisGen", "high_aes_general_v21_L"]
MODELS = [
    ModelSpec(
        name=name,
        source="fake:",
        sizes=["256x256", "1024x1024"],
        size_range=(256, 768),
        default_size="256x256",
        default_steps=1,
        max_steps=200,
        price=PRICE,
    )
    for name in NAMES
]


def test_every_dialect_bills_the_same_account_once_per_image(make_server):
    server = make_server(models=[m.model_dump() for m in MODELS], default_model="tiny-256")
    key = server.create_key(credit="10", images=50)
    c = server.client(key)

    start = balance(server, key)
    # OpenAI / SiliconFlow: 2 images
    r = c.post(
        "/v1/images/generations",
        json={"model": "tiny-256", "prompt": "a", "n": 2, "num_inference_steps": 1},
    )
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    # Yuecheng: 1 image, key in the body
    r = c.post(
        "/API/AI-picture/endpoint_pic.php",
        json={
            "api_key": key,
            "prompt": "b",
            "image_size": "1024x1024",
            "num_inference_steps": 1,
        },
    )
    body = r.json()
    assert r.status_code == 200 and body["success"] and body["images_generated"] == 1
    assert body["api_usage"]["used_images"] == 3
    # Volcengine: 1 image
    r = c.post(
        "/volcv?Action=CVProcess&Version=2022-08-31",
        json={
            "req_key": "high_aes_general_v21_L",
            "prompt": "c",
            "width": 256,
            "height": 256,
            "ddim_steps": 1,
            "use_sr": False,
            "use_pre_llm": False,
        },
    )
    assert r.status_code == 200 and r.json()["code"] == 10000, r.text
    # aichat: 2 images, as a task
    params = {"number": 2, "steps": 1, "size_id": "1:1", "prompt": "d"}
    params["model_id"] = stable_id("tiny-256")
    r = c.post(
        f"/api/image2image?key={key}",
        files={"image": ("1.png", gradient_png(), "image/png")},
        data={"params": json.dumps(params)},
    )
    task_id = r.json()["task_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = c.post(f"/api/v1/draw/query?key={key}", json={"task_id": task_id}).json()["data"]
        if data["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert data["status"] == "succeeded" and len(data["images"]) == 2
    # A refused request in each dialect costs nothing.
    assert c.post("/v1/images/generations", json={"prompt": "x", "n": 99}).status_code == 400
    assert c.post("/API/AI-picture/endpoint_pic.php", json={"api_key": key}).status_code == 400

    assert balance(server, key) == start - 6 * PRICE
    assert server.key_row(key).images_used == 6
    usage = c.post(
        "/API/AI-picture/endpoint_pic.php",
        json={"api_key": key, "prompt": "e", "image_size": "1024x1024"},
    ).json()["api_usage"]
    assert usage == {"used_images": 7, "remaining_images": 43}
