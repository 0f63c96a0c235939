"""Restarts keep keys, jobs and files; graceful shutdown; models from a local directory."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sqlalchemy import select

from pixgate.db import Database, Job

GEN = "/v1/images/generations"
BASE = {"model": "tiny-sd", "prompt": "a cat", "size": "256x256", "num_inference_steps": 2}


def _jobs(db_url: str) -> list[Job]:
    async def go():
        db = Database(db_url)
        try:
            async with db.read() as s:
                return list((await s.scalars(select(Job))).all())
        finally:
            await db.dispose()

    return asyncio.run(go())


def test_restart_keeps_keys_jobs_and_files(make_server):
    srv = make_server()
    k = srv.create_key(images=10)
    with srv.client(k) as c:
        body = c.post(GEN, json={**BASE, "seed": 5}).json()
    url = body["images"][0]["url"]
    before = httpx.get(url).content
    srv.stop()

    again = make_server(port=srv.settings.port)
    with again.client(k) as c:  # the same key still works
        assert c.post(GEN, json={**BASE, "seed": 6}).status_code == 200
    got = httpx.get(url)  # the old signed URL still serves the same file
    assert got.status_code == 200 and got.content == before
    jobs = _jobs(again.settings.db_url)
    assert len(jobs) == 2 and all(j.status == "succeeded" for j in jobs)
    assert {j.seed for j in jobs} == {5, 6}
    assert again.key_row(k).images_used == 2


def test_graceful_shutdown_requeues_unfinished_job(make_server):
    """With no grace, a running job is stopped at its next step and put back in the queue
    (not lost, not charged); the next server finishes it."""
    srv = make_server(shutdown_grace_seconds=0, generation_timeout_seconds=2)
    k = srv.create_key(images=5)
    with srv.client(k) as c:
        r = c.post(GEN, json={**BASE, "size": "1024x1024", "num_inference_steps": 100})
    assert r.status_code == 504  # the client gave up; the job was failed and released
    # Enqueue a job directly, then stop while it runs.
    core = srv.core

    async def enqueue_and_wait_running():
        from pixgate.spec.request import GenerationRequest

        req = GenerationRequest(
            model="tiny-sd",
            prompt="p",
            width=1024,
            height=1024,
            n=1,
            seed=1,
            steps=100,
            guidance=7.5,
        )
        from pixgate.queue.jobs import Admission

        caller = await core.identity.authenticate(k)
        spec = core.admission.model("tiny-sd")
        job_id = await core.queue.enqueue(req, spec, Admission(caller.key), None)
        for _ in range(200):
            job = await core.queue.get(job_id)
            if job.status == "running":
                return job_id
            await asyncio.sleep(0.05)
        raise AssertionError("job never started")

    job_id = asyncio.run_coroutine_threadsafe(enqueue_and_wait_running(), srv.server_loop()).result(
        30
    )
    srv.stop()
    job = {j.id: j for j in _jobs(srv.settings.db_url)}[job_id]
    assert job.status == "queued" and job.worker_id is None
    assert srv.key_row(k).images_used == 0
    assert srv.key_row(k).images_reserved == 1  # still reserved for the requeued job


def test_model_saved_to_disk_serves_identically(make_server, models_dir, tmp_path):
    """The local-directory route: save the builtin pipeline to a folder, configure it as a
    model source, and get the same pixels as the builtin for the same seed."""
    from pixgate.backends.diffusers.builtin import build_tiny_sd
    from pixgate.spec.catalog import ModelSpec

    folder: Path = tmp_path / "my-model"
    build_tiny_sd().save_pretrained(folder)
    spec = ModelSpec(name="my-model", source=str(folder), sizes=["256x256"], default_size="256x256")
    srv = make_server(models=[spec], demo=False)
    k = srv.create_key()
    with srv.client(k) as c:
        models = [m["id"] for m in c.get("/v1/models").json()["data"]]
        assert models == ["my-model"]
        mine = c.post(GEN, json={**BASE, "model": "my-model", "seed": 3})
        assert mine.status_code == 200, mine.text
        mine_px = np.asarray(Image.open(io.BytesIO(c.get(mine.json()["data"][0]["url"]).content)))
    srv.stop()
    builtin = make_server(port=srv.settings.port)
    with builtin.client(builtin.create_key()) as c:
        ref = c.post(GEN, json={**BASE, "seed": 3}).json()
        ref_px = np.asarray(Image.open(io.BytesIO(c.get(ref["data"][0]["url"]).content)))
    assert np.array_equal(mine_px, ref_px)


def test_bad_local_model_directory_is_a_clean_503(make_server, tmp_path):
    from pixgate.spec.catalog import ModelSpec

    spec = ModelSpec(
        name="broken", source=str(tmp_path / "missing"), sizes=["256x256"], default_size="256x256"
    )
    srv = make_server(models=[spec], demo=False)
    k = srv.create_key(images=2)
    with srv.client(k) as c:
        r = c.post(GEN, json={"model": "broken", "prompt": "x", "num_inference_steps": 1})
    assert r.status_code == 503
    assert "not a diffusers model directory" in r.json()["error"]["message"]
    assert srv.key_row(k).images_used == 0
