"""The concurrency guarantees on PostgreSQL: one server, then two server processes
sharing one database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import _create_key, _key_row, free_port
from tests.test_billing import STORM, _storm, check_storm

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_200_concurrent_requests_cap_37_credit_50_postgres(make_server, postgres_url):
    srv = make_server(models=[STORM], demo=False, max_queue=500, database_url=postgres_url)
    k = srv.create_key(images=37, credit="10")
    responses = asyncio.run(_storm(srv.url, k))
    check_storm(responses, srv.settings, srv.key_row(k), 50 * 2000)


def _serve(config: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pixgate", "serve", "--config", config, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PIXGATE_LOG_LEVEL": "WARNING"},
    )


def test_two_server_processes_share_one_postgres(make_settings, postgres_url, tmp_path, models_dir):
    settings = make_settings(models=[STORM], demo=False, max_queue=500, database_url=postgres_url)
    config = tmp_path / "shared.toml"
    config.write_text(f"""
database_url = "{postgres_url}"
models_path = "{models_dir}"
max_queue = 500
signing_secret = "shared-secret-for-both-nodes"

[[models]]
name = "paid-64"
source = "fake:"  # the nodes need no torch: billing, not drawing, is the subject
price = 0.2
sizes = ["64x64"]
default_size = "64x64"
max_steps = 4
default_steps = 1
""")
    key = asyncio.run(_create_key(settings, 37, "sk-", "paid", "10", "user", {}))
    ports = [free_port(), free_port()]
    procs = []
    for i, port in enumerate(ports):
        node = tmp_path / f"node{i}.toml"
        node.write_text(f'data_dir = "{tmp_path / f"data{i}"}"\n' + config.read_text())
        procs.append(_serve(str(node), port))
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for url, proc in zip(urls, procs, strict=True):
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, proc.communicate()[1]
                try:
                    if httpx.get(url + "/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "node not ready"
                time.sleep(0.2)
        # One paying image on each node first, counted with the storm's: however the
        # machine schedules the two processes, neither can take the whole cap before the
        # other has started (on a busy machine one once did, failing the check below).
        warm_up = [
            httpx.post(
                url + "/v1/images/generations",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "paid-64", "prompt": "warm-up", "n": 1},
                timeout=60,
            )
            for url in urls
        ]
        responses = warm_up + asyncio.run(_storm(urls, key))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.communicate(timeout=60)
    served_by = {str(r.request.url).split("/v1")[0] for r in responses if r.status_code == 200}
    assert len(served_by) == 2  # both nodes took paying requests
    check_storm(responses, settings, asyncio.run(_key_row(settings, key)), 50 * 2000)
