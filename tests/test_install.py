"""The torch-free install: an API-only node (`pixgate serve --no-workers`) never loads torch
and stays small; the engine packages come only with the `engine` extra; and the stored
request model tolerates fields from newer nodes (rolling upgrades) while the dialects keep
refusing unknown fields."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from importlib.metadata import requires
from pathlib import Path

import httpx
import psutil
import pytest

from pixgate.spec.catalog import ModelSpec
from pixgate.spec.request import GenerationRequest
from tests.conftest import GENERATIONS, free_port
from tests.services import wait_healthy

ENGINE = ("torch", "diffusers", "transformers", "accelerate", "peft", "torchsde", "safetensors")
API_NODE_RSS_LIMIT = 150 * 1024 * 1024
FAKE = ModelSpec(name="fake-64", source="fake:", sizes=["64x64"], default_size="64x64")


def test_engine_packages_only_under_the_engine_extra():
    """`pip install pixgate` pulls none of the engine; `pixgate[engine]` pulls all of it."""
    by_extra: dict[str | None, set[str]] = {}
    for line in requires("pixgate") or []:
        spec, _, marker = line.partition(";")
        name = spec.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        extra = marker.split("extra ==")[1].strip().strip("'\"") if "extra ==" in marker else None
        by_extra.setdefault(extra, set()).add(name.replace("_", "-"))
    base = by_extra[None]
    assert not base & {*ENGINE, "huggingface-hub"}, base
    assert {*ENGINE, "huggingface-hub"} <= by_extra["engine"]
    assert {"fastapi", "sqlalchemy", "pillow"} <= base
    assert "import-linter" in by_extra["test"]


def test_creating_the_app_imports_no_engine(tmp_path):
    """A fresh interpreter that builds the API app (as `serve --no-workers` does) has none
    of the engine packages in sys.modules."""
    code = f"""
import sys
from pixgate.api.app import create_app
from pixgate.settings import load_settings
create_app(load_settings(None, data_dir={str(tmp_path)!r}, run_workers=False))
import pixgate.cli  # the command line too
loaded = sorted(m for m in {ENGINE!r} if m in sys.modules)
assert not loaded, loaded
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_api_only_node_is_torch_free_and_small(tmp_path):
    """`pixgate serve --no-workers` answers, admits a task, and neither maps torch's native
    libraries nor grows past 150 MB of resident memory."""
    port = free_port()
    env = {**os.environ, "PIXGATE_DATA_DIR": str(tmp_path / "data"), "PIXGATE_DEMO": "true"}
    pixgate = [sys.executable, "-m", "pixgate"]
    made = subprocess.run(
        [*pixgate, "keys", "create", "--json", "--plan", "paid"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [*pixgate, "serve", "--no-workers", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, str(tmp_path / "serve.log"))
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
            models = c.get("/v1/models")
            assert models.status_code == 200
            assert "FLUX.1-schnell" in {m["id"] for m in models.json()["data"]}
            task = c.post(GENERATIONS, json={"model": "tiny-sd", "prompt": "x", "async": True})
            assert task.status_code == 202, task.text
            assert c.get(f"/v1/tasks/{task.json()['id']}").json()["status"] == "queued"
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "libtorch" not in maps and "/torch/" not in maps
        rss = psutil.Process(proc.pid).memory_info().rss
        assert rss < API_NODE_RSS_LIMIT, f"API node RSS {rss / 2**20:.0f} MB"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    assert "API only" in (tmp_path / "serve.log").read_text()


def test_stored_request_ignores_fields_it_does_not_know():
    stored = {
        "model": "m",
        "prompt": "p",
        "width": 64,
        "height": 64,
        "n": 1,
        "seed": 1,
        "steps": 1,
        "guidance": 1.0,
        "from_a_newer_node": {"anything": 1},
        "lora": [{"name": "ink", "scale": 0.5, "block_weights": [1, 0]}],
        "hires": {"scale": 2, "upscaler": "esrgan"},
        "watermark": {"text": "AI", "font": "serif"},
    }
    req = GenerationRequest.model_validate(stored)
    assert req.lora[0].scale == 0.5 and req.hires.scale == 2 and req.watermark.text == "AI"
    assert "from_a_newer_node" not in req.model_dump()


def test_older_worker_runs_a_job_stored_by_a_newer_api_node(make_server):
    """An API node stores a task; fields a newer release would add are written into the
    stored request; a worker started afterwards on the same database runs it."""
    api = make_server(run_workers=False, demo=False, models=[FAKE])
    key = api.create_key()
    with api.client(key) as c:
        for body, field in (
            ({"prompt": "x", "from_a_newer_node": 1}, "from_a_newer_node"),
            ({"prompt": "x", "hires": {"scale": 2, "upscaler": "esrgan"}}, "hires"),
        ):
            refused = c.post(GENERATIONS, json=body)  # dialects still refuse unknown fields
            assert refused.status_code == 400, refused.text
            assert field in refused.json()["error"]["message"]
        task = c.post(GENERATIONS, json={"prompt": "x", "async": True}).json()
    con = sqlite3.connect(api.settings.data_dir / "pixgate.db")
    (raw,) = con.execute("SELECT request FROM jobs WHERE id = ?", (task["id"],)).fetchone()
    newer = {**json.loads(raw), "from_a_newer_node": {"x": 1}}
    con.execute("UPDATE jobs SET request = ? WHERE id = ?", (json.dumps(newer), task["id"]))
    con.commit()
    con.close()

    make_server(run_workers=True, demo=False, models=[FAKE])  # same data dir and database
    deadline = time.monotonic() + 60
    with api.client(key) as c:
        while (status := c.get(f"/v1/tasks/{task['id']}").json())["status"] in (
            "queued",
            "running",
        ):
            if time.monotonic() > deadline:
                pytest.fail(f"task still {status['status']}")
            time.sleep(0.05)
    assert status["status"] == "succeeded", status
    assert status["images_produced"] == 1
