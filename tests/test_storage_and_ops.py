"""Signed URLs, expiry and sweeping; health, readiness, metrics and docs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from pixgate.storage.local import LocalStorage

GEN = "/v1/images/generations"
BASE = {"model": "tiny-sd", "prompt": "a cat", "size": "256x256", "num_inference_steps": 1}


def test_tampered_and_expired_urls_get_403(server, key):
    with server.client(key) as c:
        url = c.post(GEN, json=BASE).json()["data"][0]["url"]
        assert c.get(url).status_code == 200
        path, _, query = url.partition("?")
        params = dict(p.split("=") for p in query.split("&"))
        bad_sig = f"{path}?expires={params['expires']}&sig={'0' * 32}"
        later = f"{path}?expires={int(params['expires']) + 10}&sig={params['sig']}"
        other_file = url.replace("-0.png", "-1.png")
        for bad in (bad_sig, later, other_file, path, path + "?expires=abc&sig=x"):
            r = c.get(bad)
            assert r.status_code == 403, bad
            assert r.json()["error"]["code"] == "url_invalid"
        assert c.get("/files/../pixgate.db?expires=1&sig=x").status_code in (403, 404)


def test_expired_url_refused_and_file_swept(tmp_path: Path):
    storage = LocalStorage(tmp_path / "files", b"secret", ttl_seconds=60)
    stored = storage.save("job-0.png", b"\x89PNG fake")
    assert storage.verify(
        stored.path, str(stored.expires), storage._sign(stored.path, stored.expires)
    )
    past = int(time.time()) - 1
    assert storage.verify(stored.path, str(past), storage._sign(stored.path, past)) is None
    fresh = storage.save("job-1.png", b"new")
    old_file = storage.root / stored.path
    os.utime(old_file, (time.time() - 120, time.time() - 120))
    assert storage.sweep() == 1
    assert not old_file.exists() and (storage.root / fresh.path).exists()


def test_path_traversal_is_refused(tmp_path: Path):
    storage = LocalStorage(tmp_path / "files", b"secret", ttl_seconds=60)
    (tmp_path / "secret.txt").write_text("x")
    rel = "../secret.txt"
    exp = int(time.time()) + 60
    assert storage.verify(rel, str(exp), storage._sign(rel, exp)) is None


def test_short_ttl_url_expires_over_http(make_server):
    srv = make_server(url_ttl_seconds=2)
    k = srv.create_key()
    with srv.client(k) as c:
        url = c.post(GEN, json=BASE).json()["images"][0]["url"]
        assert c.get(url).status_code == 200
        expires = int(url.partition("expires=")[2].partition("&")[0])
        deadline = time.monotonic() + 10
        while (status := c.get(url).status_code) == 200:  # until the link lapses
            assert time.monotonic() < deadline, "the URL never expired"
            time.sleep(0.05)
        assert status == 403 and time.time() > expires


def test_health_ready_metrics_docs(server, key):
    with server.client(key) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
        c.post(GEN, json={**BASE, "n": 2})
        metrics = c.get("/metrics").text
        assert 'pixgate_images_generated_total{model="tiny-sd"} 2.0' in metrics
        assert "pixgate_queue_depth 0.0" in metrics
        assert (
            'pixgate_http_requests_total{method="POST",route="/v1/images/generations",'
            'status="200"} 1.0' in metrics
        )
        assert "pixgate_http_request_duration_seconds_bucket" in metrics
        assert c.get("/docs").status_code == 200
        schema = c.get("/openapi.json").json()
        body = schema["paths"]["/v1/images/generations"]["post"]["requestBody"]
        body_schema = body["content"]["application/json"]["schema"]
        if "$ref" in body_schema:  # '#/components/schemas/<name>'
            body_schema = schema["components"]["schemas"][body_schema["$ref"].split("/")[-1]]
        props = body_schema["properties"]
        assert {"prompt", "image_size", "batch_size", "seed", "num_inference_steps"} <= set(props)


def test_logs_never_contain_the_key(make_server, capsys):
    server = make_server(log_level="INFO")
    key = server.create_key()
    with server.client(key) as c:
        c.post(GEN, json=BASE)
        c.post(GEN, json={**BASE, "n": 99})
    out = capsys.readouterr()
    assert '"event": "request"' in out.err  # logs were written, as JSON on stderr
    assert key not in out.out + out.err
    assert key[3:] not in out.out + out.err


def test_files_url_uses_public_url(make_server):
    srv = make_server(public_url="https://img.example.test/")
    k = srv.create_key()
    with srv.client(k) as c:
        url = c.post(GEN, json=BASE).json()["data"][0]["url"]
    assert url.startswith("https://img.example.test/files/")
    local = url.replace("https://img.example.test", srv.url)
    assert httpx.get(local).status_code == 200
