"""Relayed models end to end, the money side: exact charges (price x images made, partial
results included), nothing charged on failures, the job's channel and upstream cost
recorded, the channel's margin in GET /admin/channels, the audit clean; concurrent
requests never overdrawing a balance; per-channel max_concurrency; admission refusing
what a channel type cannot express before anything is reserved; a cancelled task
refunded and its upstream call abandoned."""

from __future__ import annotations

import asyncio
import io
import json
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from pixgate.db import ChannelAttempt, Database, Job
from pixgate.spec.catalog import stable_id
from tests.conftest import balance
from tests.images import gradient_png
from tests.relay_servers import (
    audit_clean,
    channels,
    fixtures,
    generate,
    own_images,
    relayed,
    router,
    until,
)
from tests.test_tasks import TASKS

upstreams, module_upstreams = fixtures()

PRICE = Decimal("0.1")
UPSTREAM_PRICE = Decimal("0.03")
CV = "/volcv?Action=CVProcess&Version=2022-08-31"


def _mask() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (256, 256), (0, 0, 0, 0)).save(out, "PNG")  # transparent: edit all
    return out.getvalue()


MASK = _mask()


@pytest.fixture(scope="module")
def fakes(module_upstreams):
    """One fake per behaviour this module needs, each behind its own channel."""
    made = {
        "ok": module_upstreams("openai"),
        "partial": module_upstreams("openai"),
        "ark-partial": module_upstreams("ark"),
        "slow": module_upstreams("openai"),  # behind max_concurrency = 2
        "race": module_upstreams("openai"),
        "hang": module_upstreams("openai"),
        "fail": module_upstreams("openai"),
        "ark": module_upstreams("ark"),
        "sf": module_upstreams("siliconflow"),
    }
    made["partial"].set("partial")
    made["ark-partial"].set("partial")
    made["slow"].set("slow", seconds=0.3)
    made["race"].set("slow", seconds=0.3)
    made["hang"].set("slow", seconds=60)
    made["fail"].set("fail")
    return made


@pytest.fixture(scope="module")
def server(make_module_server, fakes):
    specs = [fake.channel(name) for name, fake in fakes.items()]
    specs[0] = fakes["ok"].channel("ok", upstream_price=UPSTREAM_PRICE)
    specs[3] = fakes["slow"].channel("slow", max_concurrency=2)
    wide = {"sizes": ["256x256", "1024x1024"], "size_range": [256, 768], "max_steps": 200}
    models = [relayed(f"m-{name}", name) for name in fakes]
    models[0] = relayed("m-ok", "ok", **wide)
    return make_module_server(channels=specs, models=models, demo=False, shutdown_grace_seconds=1)


def db_rows(server, model: str, key: str) -> tuple[list[Job], list[ChannelAttempt]]:
    """The jobs of `model` by `key`'s account and their upstream calls, from the server's
    database."""
    user_id = server.key_row(key).user_id

    async def go():
        db = Database(server.settings.db_url)
        try:
            async with db.read() as s:
                mine = select(Job).where(Job.model == model, Job.user_id == user_id)
                jobs = list((await s.scalars(mine)).all())
                ids = [j.id for j in jobs]
                calls = (
                    await s.scalars(select(ChannelAttempt).where(ChannelAttempt.job_id.in_(ids)))
                ).all()
                return jobs, list(calls)
        finally:
            await db.dispose()

    return asyncio.run(go())


# --- charges -------------------------------------------------------------------------------
def test_balance_exact_after_successes_and_untouched_by_failures(server, fakes):
    key = server.create_key(credit="5")
    with server.client(key) as c:
        for n in (1, 2, 3):
            assert generate(c, "m-ok", n=n).status_code == 200
        assert generate(c, "m-fail", n=2).status_code == 502
        assert generate(c, "m-fail").status_code == 502
    assert balance(server, key) == Decimal("5") - 6 * PRICE
    audit_clean(server)


def test_job_row_records_channel_and_upstream_cost(server, fakes):
    """A relayed job's row holds the channel that made its images and what the upstream
    cost, and channel_attempts one row per call."""
    key = server.create_key(credit="5")
    with server.client(key) as c:
        assert generate(c, "m-ark", n=2).status_code == 200
        assert generate(c, "m-fail").status_code == 502
    (job,), attempts = db_rows(server, "m-ark", key)
    assert job.channel == "ark" and job.n_succeeded == 2 and job.cost_minor > 0
    assert job.upstream_cost_minor == 0  # ark's upstream_price is unset
    # ark makes one upstream call per image; the router records the channel's turn
    assert [(a.channel, a.outcome, a.images) for a in attempts] == [("ark", "ok", 2)]
    assert len(fakes["ark"].calls) >= 2
    (failed_job,), _ = db_rows(server, "m-fail", key)
    assert failed_job.status == "failed" and failed_job.error_code == "upstream_error"
    assert failed_job.channel is None and failed_job.cost_minor == 0


def test_channel_view_shows_upstream_cost_revenue_and_margin(server, fakes):
    key = server.create_key(credit="5")
    admin = server.create_key(role="admin")
    before = channels(server, admin)["ok"]["last_hour"]
    with server.client(key) as c:
        assert generate(c, "m-ok", n=3).status_code == 200
    after = channels(server, admin)["ok"]["last_hour"]
    assert after["calls"] - before["calls"] == 1 and after["ok"] - before["ok"] == 1
    assert after["images"] - before["images"] == 3
    gained = {k: Decimal(after[k]) - Decimal(before[k]) for k in ("upstream_cost", "revenue")}
    assert gained == {"upstream_cost": 3 * UPSTREAM_PRICE, "revenue": 3 * PRICE}
    assert Decimal(after["margin"]) == Decimal(after["revenue"]) - Decimal(after["upstream_cost"])
    assert after["success_rate"] == 1.0 and after["latency_ms"]["p50"] is not None
    (job,), _ = db_rows(server, "m-ok", key)
    assert job.channel == "ok" and job.upstream_cost_minor > 0


def test_admin_jobs_shows_channel_and_upstream_cost(server, fakes):
    key = server.create_key(credit="5")
    admin = server.create_key(role="admin")
    with server.client(key) as c:
        assert generate(c, "m-ok", n=2).status_code == 200
    user_id = server.key_row(key).user_id
    with server.client(admin) as c:
        r = c.get("/admin/jobs", params={"user": user_id})
    assert r.status_code == 200, r.text
    (row,) = r.json()["data"]
    assert row["model"] == "m-ok" and row["cost"] == "0.2"
    assert row.get("channel") == "ok", row
    assert Decimal(row.get("upstream_cost", "nan")) == 2 * UPSTREAM_PRICE, row


@pytest.mark.parametrize("model", ["m-partial", "m-ark-partial"])
def test_partial_results_are_billed_per_image_made(server, fakes, model):
    key = server.create_key(credit="5")
    with server.client(key) as c:
        r = generate(c, model, n=3)
    assert r.status_code == 200, r.text
    assert len(own_images(server, r.json())) == 2
    assert balance(server, key) == Decimal("5") - 2 * PRICE
    (job,), _ = db_rows(server, model, key)
    assert (job.n, job.n_succeeded, job.cost_minor > 0) == (3, 2, True)
    audit_clean(server)


def test_concurrent_requests_never_overdraw(server, fakes):
    key = server.create_key(credit=str(3 * PRICE))
    with server.client(key) as c, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: generate(c, "m-race"), range(8)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * 3 + [429] * 5, [r.text for r in answers]
    refused = [r.json()["error"]["code"] for r in answers if r.status_code == 429]
    assert set(refused) == {"insufficient_credit"}
    assert balance(server, key) == Decimal("0")
    audit_clean(server)


def test_max_concurrency_bounds_calls_to_a_channel(server, fakes):
    up = fakes["slow"]
    up.reset()
    up.set("slow", seconds=0.3)
    key = server.create_key(credit="5")
    with server.client(key) as c, ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: generate(c, "m-slow"), range(6)))
    assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
    assert len(up.calls) == 6 and up.max_in_flight == 2
    assert balance(server, key) == Decimal("5") - 6 * PRICE


# --- admission ---------------------------------------------------------------------------
def refused(r, param: str, model: str) -> None:
    assert r.status_code == 400, r.text
    text = r.text
    assert param in text and model in text and "leave it out" in text, text


def test_fields_a_channel_type_cannot_express_are_400_before_reserving(server, fakes):
    key = server.create_key(credit="5")
    with server.client(key) as c:
        r = generate(c, "m-ok", seed=3)
        refused(r, "seed", "m-ok")
        assert r.json()["error"]["param"] == "seed"
        refused(generate(c, "m-ark", negative_prompt="fog"), "negative_prompt", "m-ark")
        refused(generate(c, "m-ark", num_inference_steps=4), "num_inference_steps", "m-ark")
        r = c.post(
            "/v1/images/edits",
            data={"model": "m-sf", "prompt": "a", "size": "256x256"},
            files={"image": ("i.png", gradient_png(), "image/png"), "mask": ("m.png", MASK)},
        )
        assert r.status_code == 400 and "m-sf" in r.text and "inpaint" in r.text, r.text
        # what each channel can express goes through
        assert generate(c, "m-ark", seed=3, guidance_scale=4).status_code == 200
        assert generate(c, "m-sf", negative_prompt="fog", seed=1).status_code == 200
    assert balance(server, key) == Decimal("5") - 2 * PRICE
    row = server.key_row(key)
    assert row.images_reserved == 0
    assert db_rows(server, "m-ok", key) == ([], [])


def test_volcengine_refusal_names_its_own_field(server, fakes):
    """Volcengine's guidance is `scale`: the refusal names the field the client sent."""
    key = server.create_key(credit="5")
    body = {"req_key": "m-ok", "prompt": "a", "width": 256, "height": 256, "scale": 5.0}
    r = httpx.post(server.url + CV, json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400, r.text
    message = r.json()["ResponseMetadata"]["Error"]["Message"]
    assert "m-ok" in message and "'scale'" in message, message
    assert balance(server, key) == Decimal("5")


def test_aichat_refusal_names_its_own_field(server, fakes):
    """aichat's strength is `denoising_strength`, which a siliconflow channel cannot send:
    the refusal names the field the client sent."""
    key = server.create_key(credit="5")
    params = {"size_id": "1:1", "prompt": "a", "model_id": stable_id("m-sf")}
    r = httpx.post(
        f"{server.url}/api/image2image?key={key}",
        files={"image": ("1.png", gradient_png(), "image/png")},
        data={"params": json.dumps({**params, "denoising_strength": 50})},
    )
    assert r.status_code == 400, r.text
    error = r.json()["data"]["error"]
    assert "m-sf" in error["message"] and error["param"] == "denoising_strength", error
    assert balance(server, key) == Decimal("5")


# --- leases and cancellation ----------------------------------------------------------------
def test_cancelled_task_is_refunded_and_its_upstream_call_abandoned(server, fakes):
    up = fakes["hang"]
    key = server.create_key(credit="5")
    with server.client(key) as c:
        r = generate(c, "m-hang", n=2, **{"async": True})
        assert r.status_code == 202, r.text
        task_id = r.json()["id"]
        until(lambda: up.in_flight == 1, what="the upstream call")
        until(lambda: router(server).channels["hang"].in_flight == 1, what="the relay's call")
        assert balance(server, key) == Decimal("5") - 2 * PRICE  # reserved
        cancelled = c.post(f"{TASKS}/{task_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cost"] == "0"
        until(lambda: router(server).channels["hang"].in_flight == 0, what="the call abandoned")
        lane = server.core.worker.relay
        until(lambda: task_id not in lane._running, what="the relay job ended")
        task = c.get(f"{TASKS}/{task_id}").json()
        assert task["status"] == "cancelled" and task["error"]["code"] == "cancelled"
    assert balance(server, key) == Decimal("5")
    assert len(up.calls) == 1  # not retried elsewhere
    assert router(server).channels["hang"].state == "closed"  # no verdict on the channel
    audit_clean(server)


def test_a_long_upstream_call_keeps_its_lease(make_server, upstreams):
    """A call that outlasts lease_seconds is renewed: the housekeeper never hands the job
    to another run, so the upstream is called once and the job charged once."""
    up = upstreams("openai")
    up.set("slow", seconds=2.5)
    server = make_server(
        channels=[up.channel("slow", timeout_seconds=20)],
        models=[relayed("m", "slow")],
        demo=False,
        lease_seconds=1.2,
        sweep_interval_seconds=0.2,
        shutdown_grace_seconds=1,
    )
    key = server.create_key(credit="5")
    with server.client(key) as c:
        r = generate(c, "m")
    assert r.status_code == 200, r.text
    assert len(up.calls) == 1
    (job,), attempts = db_rows(server, "m", key)
    assert job.attempts == 1 and len(attempts) == 1
    assert balance(server, key) == Decimal("5") - PRICE
    audit_clean(server)


def test_a_relayed_job_still_calling_at_shutdown_is_requeued_and_finished_after(
    make_server, upstreams, tmp_path
):
    """Stopping a server abandons the calls still out after the grace period and puts their
    jobs back in the queue (nothing charged); the next server runs them once."""
    up = upstreams("openai")
    up.set("slow", seconds=30)
    settings = dict(
        channels=[up.channel("held", timeout_seconds=60)],
        models=[relayed("m-held", "held")],
        demo=False,
        data_dir=tmp_path / "data",
        shutdown_grace_seconds=0.2,
    )
    first = make_server(**settings)
    key = first.create_key(credit="5")
    with first.client(key) as c:
        r = generate(c, "m-held", **{"async": True})
        assert r.status_code == 202, r.text
        task_id = r.json()["id"]
        until(lambda: up.in_flight == 1, what="the upstream call")
    first.stop()
    (job,), _ = db_rows(first, "m-held", key)
    assert job.status == "queued" and job.worker_id is None and job.cost_minor == 0
    up.set("ok")
    second = make_server(**settings)
    with second.client(key) as c:
        done = until(
            lambda: (t := c.get(f"{TASKS}/{task_id}").json())["status"] == "succeeded" and t,
            what="the job finished by the next server",
        )
    assert done["cost"] == str(PRICE)
    assert balance(second, key) == Decimal("5") - PRICE
    audit_clean(second)
