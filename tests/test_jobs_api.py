"""Job status, per-step progress and cancellation (stops at the next step, refunded)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from tests.conftest import GENERATIONS, generate
from tests.test_billing import PAID, balance, run_audit


def _wait_for(c, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = c.get("/v1/jobs", params={"status": status}).json()["data"]
        if jobs:
            return jobs[0]
        time.sleep(0.05)
    raise AssertionError(f"no {status} job")


def test_progress_then_cancel_refunds_and_frees_the_worker(make_server):
    big = PAID.model_copy(
        update={
            "name": "paid-big",
            "sizes": ["1024x1024"],
            "default_size": "1024x1024",
            "max_steps": 200,
        }
    )
    srv = make_server(models=[big, PAID], demo=False)
    k = srv.create_key(credit="2")
    outcome: dict = {}

    def long_request():
        with srv.client(k) as c:
            outcome["r"] = c.post(
                GENERATIONS, json={"model": "paid-big", "prompt": "x", "num_inference_steps": 100}
            )

    t = threading.Thread(target=long_request)
    t.start()
    with srv.client(k) as c:
        job = _wait_for(c, "running")
        assert balance(srv, k) == Decimal("1.8")  # reserved while running
        deadline = time.monotonic() + 30
        while c.get(f"/v1/jobs/{job['id']}").json()["progress"] == 0:
            assert time.monotonic() < deadline, "no progress recorded"
            time.sleep(0.1)
        progress = c.get(f"/v1/jobs/{job['id']}").json()["progress"]
        assert 0 < progress < 1
        cancelled = c.post(f"/v1/jobs/{job['id']}/cancel").json()
        assert cancelled["status"] == "cancelled" and cancelled["error"]["code"] == "cancelled"
        again = c.post(f"/v1/jobs/{job['id']}/cancel")
        assert again.status_code == 409 and again.json()["error"]["code"] == "job_finished"
    t.join(30)
    assert outcome["r"].status_code == 409  # the waiting client hears it was cancelled
    assert balance(srv, k) == Decimal("2")  # refunded whole
    with srv.client(k) as c:  # the worker stopped at its next step and is free
        start = time.monotonic()
        assert generate(c, model="paid-64", size="64x64").status_code == 200
        assert time.monotonic() - start < 10
    assert run_audit(srv.settings) == []


def test_jobs_are_private_to_their_account(server):
    a, b = server.create_key(), server.create_key()
    with server.client(a) as ca, server.client(b) as cb:
        generate(ca)
        job = ca.get("/v1/jobs").json()["data"][0]
        assert job["status"] == "succeeded" and job["progress"] == 1.0
        assert cb.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert cb.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
        assert cb.get("/v1/jobs").json()["data"] == []
