"""The Backend seam: the fake backend's options, the registry that picks a backend from a
model's source, and the worker running a fake model end to end over HTTP."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import pytest
from PIL import Image
from sqlalchemy import update

from pixgate.backends import Backends, backend_kind, check_catalog
from pixgate.backends.base import Backend, BackendError
from pixgate.backends.fake import FakeBackend, FakeOptions, FakeOptionsError, colour, parse_source
from pixgate.db import Database, Job
from pixgate.metrics import Metrics
from pixgate.queue.jobs import JobQueue
from pixgate.queue.worker import Worker
from pixgate.spec.catalog import TINY_SD, Catalog, ModelSpec
from pixgate.spec.request import GenerationRequest, HiresFix
from pixgate.storage import make_storage
from tests.conftest import GENERATIONS, balance


def fake(source: str = "fake:", **fields) -> ModelSpec:
    sizes = ["64x64", "64x96"]
    return ModelSpec(name="fake", source=source, sizes=sizes, default_size="64x64", **fields)


def request(prompt: str = "a cat", seed: int = 1, n: int = 1, **fields) -> GenerationRequest:
    values = dict(model="fake", prompt=prompt, width=64, height=96, n=n, seed=seed, steps=2)
    return GenerationRequest(**{"guidance": 5.0, **values, **fields})


def generate(source: str, *reqs: GenerationRequest, on_step=None):
    return FakeBackend().generate_batch(list(reqs), fake(source), on_step)


# --- the fake backend ------------------------------------------------------------------
def test_fake_is_a_backend_and_makes_solid_images_of_the_requested_size():
    assert isinstance(FakeBackend(), Backend)
    [result] = generate("fake:", request(n=2))
    assert [im.size for im in result.images] == [(64, 96), (64, 96)]
    for im, seed in zip(result.images, (1, 2), strict=True):
        assert im.getcolors() == [(64 * 96, colour("a cat", seed))]  # one colour
    hires = request(hires=HiresFix(scale=2, strength=0.5))
    assert generate("fake:", hires)[0].images[0].size == (128, 192)  # the engine's size


def test_fake_images_are_reproducible_and_differ_between_requests():
    def pixels(req):
        return [im.tobytes() for im in generate("fake:", req)[0].images]

    assert pixels(request(seed=5, n=2)) == pixels(request(seed=5, n=2))
    assert pixels(request(seed=5))[0] != pixels(request(seed=6))[0]
    assert pixels(request("a dog", seed=5))[0] != pixels(request("a cat", seed=5))[0]
    # a batch makes each request's images as it would alone
    batched = generate("fake:", request("p1", 3), request("p2", 9, n=2))
    assert [im.tobytes() for im in batched[1].images] == pixels(request("p2", 9, n=2))


def test_fake_delay_and_steps_call_on_step_each_step():
    calls = []
    start = time.perf_counter()
    generate("fake:delay=0.05,steps=4", request(), on_step=lambda s, t: calls.append((s, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert time.perf_counter() - start >= 0.2
    start = time.perf_counter()
    generate("fake:image_delay=0.05", request(n=3))
    assert time.perf_counter() - start >= 0.15
    calls.clear()
    generate("fake:", request(steps=3), on_step=lambda s, t: calls.append(s))
    assert calls == [1, 2, 3]  # the request's steps by default


def test_fake_stops_when_the_step_callback_raises():
    class Stop(Exception):
        pass

    def stop(step, _total):
        if step == 2:
            raise Stop

    start = time.perf_counter()
    with pytest.raises(Stop):
        generate("fake:delay=0.05,steps=100", request(), on_step=stop)
    assert time.perf_counter() - start < 1


def test_fake_injects_per_image_and_whole_batch_failures():
    [result] = generate("fake:fail_every=2", request(n=4))
    assert [im is None for im in result.images] == [False, True, False, True]
    assert all(im is None for im in generate("fake:fail_every=1", request(n=3))[0].images)
    with pytest.raises(BackendError) as caught:
        generate("fake:error=invalid_sampler", request())
    assert caught.value.code == "invalid_sampler" and "injected" in caught.value.message


def test_fake_options_parse():
    assert parse_source("fake:") == FakeOptions()
    assert parse_source("fake: delay=0.5 , steps=3,fail_every=2,error=model_unavailable") == (
        FakeOptions(delay=0.5, steps=3, fail_every=2, error="model_unavailable")
    )


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("fake:dealy=1", ["unknown option 'dealy'", "delay, image_delay, steps"]),
        ("fake:delay=abc", ["delay must be seconds from 0 to 3600", "'abc'"]),
        ("fake:delay=-1", ["delay must be seconds"]),
        ("fake:delay=nan", ["delay must be seconds"]),
        ("fake:delay", ["delay must be seconds"]),
        ("fake:steps=0", ["steps must be an integer from 1 to 1000"]),
        ("fake:fail_every=1.5", ["fail_every must be an integer"]),
        ("fake:error=oops", ["error must be one of model_unavailable, invalid_sampler", "'oops'"]),
        ("fake:steps=2,steps=3", ["steps is given twice"]),
        ("fake:delay=1,", ["unknown option ''"]),
    ],
)
def test_bad_fake_options_are_refused_naming_the_option(source, words):
    with pytest.raises(FakeOptionsError) as caught:
        parse_source(source)
    assert all(w in str(caught.value) for w in words), caught.value
    assert source in str(caught.value)
    with pytest.raises(ValueError, match="model fake: fake backend source"):
        check_catalog([fake(source)])


def test_a_bad_fake_source_stops_a_worker_at_startup(make_settings):
    settings = make_settings(models=[fake("fake:dealy=1")], demo=False)
    catalog = Catalog.build(settings.models, demo=False)
    queue = JobQueue(Database(settings.db_url), max_queue=10)
    with pytest.raises(ValueError, match=r"model fake: .*unknown option 'dealy'"):
        Worker(settings, catalog, queue, make_storage(settings, b"secret"), Metrics())


# --- the registry ----------------------------------------------------------------------
def test_the_source_picks_the_backend(make_settings):
    def spec(source):
        return TINY_SD.model_copy(update={"source": source})

    kinds = [
        backend_kind(spec(s))
        for s in ("builtin:tiny-sd", "org/model", "/models/x", "./x", "fake:", "channel:upstream")
    ]
    assert kinds == ["diffusers", "diffusers", "diffusers", "diffusers", "fake", "channel"]
    backends = Backends(make_settings())
    made = backends.get(fake())
    assert isinstance(made, FakeBackend) and backends.get(fake("fake:delay=1")) is made
    relay = backends.get(TINY_SD.model_copy(update={"name": "relayed", "source": "channel:up"}))
    assert type(relay).__name__ == "RelayBackend"  # made without torch (test_no_torch...)
    assert backends.made() == {"fake": made, "channel": relay}


NO_TORCH = """
import sys
for name in ("torch", "diffusers", "transformers"):
    sys.modules[name] = None  # as on a machine without pixgate[engine]
from pixgate.backends import Backends, BackendError
from pixgate.queue import worker  # the worker imports the registry, never torch
from pixgate.settings import load_settings
from pixgate.db import Database
from pixgate.metrics import Metrics
from pixgate.queue.jobs import JobQueue
from pixgate.queue.worker import Worker
from pixgate.spec.catalog import TINY_SD, Catalog, ModelSpec
backends = Backends(load_settings(None, data_dir={data!r}))
fake = ModelSpec(name="f", source="fake:", sizes=["64x64"], default_size="64x64")
assert type(backends.get(fake)).__name__ == "FakeBackend"
relayed = ModelSpec(name="r", channels=["up"], sizes=["64x64"], default_size="64x64")
assert type(backends.get(relayed)).__name__ == "RelayBackend"  # relay workers need no torch
try:
    backends.get(TINY_SD)
except BackendError as exc:
    print(exc.code)
    print(exc.message)
"""


def test_a_worker_without_torch_serves_fake_and_relayed_models_and_says_what_to_install(tmp_path):
    script = NO_TORCH.format(data=str(tmp_path / "data"))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    code, message = out.stdout.strip().split("\n")
    assert code == "model_unavailable"
    assert "tiny-sd" in message and "pip install 'pixgate[engine]'" in message


# --- a fake model served end to end --------------------------------------------------------
PRICED = ModelSpec(
    name="fake-paid",
    source="fake:delay=0.01",
    price=Decimal("0.5"),
    sizes=["64x64", "128x64"],
    default_size="64x64",
)


def test_worker_serves_a_fake_model_over_http_and_bills_what_it_made(make_server):
    dropping = PRICED.model_copy(update={"name": "fake-dropping", "source": "fake:fail_every=3"})
    srv = make_server(models=[PRICED, dropping], demo=False, explicit_label=False)
    k = srv.create_key(credit="10")
    with srv.client(k) as c:
        r = c.post(
            GENERATIONS,
            json={"model": "fake-paid", "prompt": "p", "n": 3, "seed": 40, "size": "128x64"},
        )
        assert r.status_code == 200, r.text
        for i, item in enumerate(r.json()["data"]):
            image = Image.open(io.BytesIO(httpx.get(item["url"]).content)).convert("RGB")
            assert image.size == (128, 64)
            assert image.getcolors() == [(128 * 64, colour("p", 40 + i))]
        r = c.post(GENERATIONS, json={"model": "fake-dropping", "prompt": "p", "n": 3})
        assert r.status_code == 200 and len(r.json()["data"]) == 2  # the 3rd one failed
    assert balance(srv, k) == Decimal("10") - Decimal("0.5") * 5
    assert srv.key_row(k).images_used == 5


# --- one lease renewer per batch ---------------------------------------------------------
def _batch_scenario(settings, spec: ModelSpec, steal: int, jobs: int = 3):
    """Queue `jobs` compatible jobs, let one worker claim them as one batch, then hand the
    first `steal` of them to another worker (as the reaper would after a stall). Returns
    the jobs afterwards, the renewals made ((job id, task, ok)), and how long the worker
    took to stop after the steal."""

    async def go():
        db = Database(settings.db_url)
        await db.migrate()
        queue = JobQueue(db, max_queue=10)
        renewals = []
        real_renew = queue.renew_many

        async def renew(job_ids, worker_id, lease_seconds):
            renewed = await real_renew(job_ids, worker_id, lease_seconds)
            task = asyncio.current_task()
            renewals.extend((job_id, task, job_id in renewed) for job_id in job_ids)
            return renewed

        queue.renew_many = renew
        reqs = [request(f"p{i}", seed=i, width=64, height=64, model=spec.name) for i in range(jobs)]
        ids = [await queue.enqueue(r, spec, None, None) for r in reqs]
        storage = make_storage(settings, b"secret")
        worker = Worker(settings, Catalog([spec]), queue, storage, Metrics())
        worker.start()
        deadline = time.monotonic() + 30
        while [(await queue.get(i)).status for i in ids] != ["running"] * jobs:
            assert time.monotonic() < deadline, "the batch was not claimed"
            await asyncio.sleep(0.02)
        async with db.write() as s:
            await s.execute(update(Job).where(Job.id.in_(ids[:steal])).values(worker_id="thief"))
        stolen_at = time.monotonic()
        for job_id in ids[steal:]:
            await queue.wait(job_id, 30)
        await worker.stop(30)
        stopped = time.monotonic() - stolen_at
        rows = [await queue.get(i) for i in ids]
        await db.dispose()
        return rows, renewals, stopped

    return asyncio.run(go())


SLOW_BATCH = ModelSpec(
    name="slow",
    source="fake:delay=0.1,steps=12",
    sizes=["64x64"],
    default_size="64x64",
    max_batch=4,
)


def test_one_renewer_per_batch_drops_a_job_that_lost_its_lease(make_settings):
    settings = make_settings(models=[SLOW_BATCH], demo=False, lease_seconds=0.45)
    rows, renewals, _ = _batch_scenario(settings, SLOW_BATCH, steal=1)
    lost, *kept = rows
    assert [r.status for r in kept] == ["succeeded", "succeeded"]
    assert all(len(r.images) == 1 for r in kept)
    # the lost job is the other worker's now: not settled, not stored by this one
    assert lost.status == "running" and lost.worker_id == "thief" and not lost.images
    assert not list(settings.files_dir.rglob(f"{lost.id}-*"))
    # one task renewed every job of the batch; the lost job was not renewed again
    assert len({task for _, task, _ in renewals}) == 1
    assert {job_id for job_id, _, _ in renewals} == {r.id for r in rows}
    tries = [ok for job_id, _, ok in renewals if job_id == lost.id]
    assert tries[-1] is False and tries.count(False) == 1


def test_a_batch_whose_leases_are_all_lost_stops_generating(make_settings):
    spec = SLOW_BATCH.model_copy(update={"source": "fake:delay=0.05,steps=200"})  # 10 s
    settings = make_settings(models=[spec], demo=False, lease_seconds=0.6)
    rows, _, stopped = _batch_scenario(settings, spec, steal=2, jobs=2)
    assert all(r.status == "running" and r.worker_id == "thief" for r in rows)
    assert stopped < 3, stopped  # at the first renewal after the steal, not after 10 s
    assert not list(settings.files_dir.rglob("*.png"))
