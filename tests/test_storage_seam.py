"""The Storage seam: LocalStorage keeps the protocol's contract (save, read, delete,
signed url, verify, download, sweep), and the file route serves whatever a Storage
answers (bytes or a redirect) without knowing where files live."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pixgate.storage import Download, Storage, StoredFile, make_storage
from pixgate.storage.local import LocalStorage
from tests.conftest import RunningServer

PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


@pytest.fixture(params=["local"])
def storage(request, tmp_path: Path) -> Iterator[Storage]:
    """Every Storage implementation the contract is checked against (S3 joins later)."""
    yield LocalStorage(tmp_path / "files", b"secret", ttl_seconds=60)


def _query(url: str) -> tuple[str, str, str]:
    """(path, expires, sig) of a '/files/<path>?expires=..&sig=..' URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path.removeprefix("/files/"), query["expires"][0], query["sig"][0]


def test_storage_contract(storage: Storage):
    assert isinstance(storage, Storage)
    before = time.time()
    stored = storage.save("job-0.png", PNG)
    assert isinstance(stored, StoredFile) and stored.path.endswith("job-0.png")
    assert before + storage.ttl_seconds <= stored.expires <= time.time() + storage.ttl_seconds + 1
    assert storage.read(stored.path) == PNG

    url = storage.url(stored.path, stored.expires)
    path, expires, sig = _query(url)
    assert path == stored.path and expires == str(stored.expires)
    assert storage.verify(path, expires, sig) == stored.path
    assert storage.download(stored.path) == Download("image/png", data=PNG)

    refused = [
        (path, expires, "0" * len(sig)),  # tampered signature
        (path, str(stored.expires + 10), sig),  # expiry moved out
        (path.replace("job-0", "job-1"), expires, sig),  # another file's name
        (path, None, None),
        (path, "abc", sig),
    ]
    for args in refused:
        assert storage.verify(*args) is None, args
    past = int(time.time()) - 1  # correctly signed, but expired
    assert storage.verify(*_query(storage.url(stored.path, past))) is None

    storage.delete(stored.path)
    storage.delete(stored.path)  # deleting twice is fine
    with pytest.raises(FileNotFoundError):
        storage.read(stored.path)
    with pytest.raises(FileNotFoundError):
        storage.download(stored.path)
    assert storage.verify(path, expires, sig) is None  # signed, but gone

    kept = storage.save("job-2.webp", b"webp")
    assert storage.download(kept.path).media_type == "image/webp"
    assert storage.sweep(now=time.time()) == 0  # not expired yet
    assert storage.sweep(now=time.time() + storage.ttl_seconds + 5) == 1
    with pytest.raises(FileNotFoundError):
        storage.read(kept.path)


def test_storage_refuses_paths_outside_itself(storage: Storage, tmp_path: Path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not an image")
    for path in ("../outside.txt", "x/../../outside.txt", str(outside)):
        with pytest.raises(FileNotFoundError):
            storage.read(path)
        storage.delete(path)  # nothing happens
        assert outside.exists(), path


def test_local_urls_keep_their_format_and_signature(tmp_path: Path):
    """Links handed out before this change stay valid: same path, query and HMAC."""
    storage = LocalStorage(tmp_path / "files", b"secret", ttl_seconds=60)
    stored = storage.save("job-0.png", PNG)
    sig = hmac.new(b"secret", f"{stored.path}\n{stored.expires}".encode(), hashlib.sha256)
    expected = f"/files/{stored.path}?expires={stored.expires}&sig={sig.hexdigest()[:32]}"
    assert storage.url(stored.path, stored.expires) == expected


def test_make_storage_uses_the_data_dir_and_ttl(make_settings):
    settings = make_settings(url_ttl_seconds=123)
    storage = make_storage(settings, b"k")
    assert isinstance(storage, Storage) and storage.ttl_seconds == 123
    stored = storage.save("x.png", PNG)
    assert (settings.files_dir / stored.path).read_bytes() == PNG


# --- the file route, over HTTP ----------------------------------------------------------
@pytest.fixture
def api(make_server) -> RunningServer:
    return make_server(run_workers=False)


def test_file_route_serves_signed_urls_and_refuses_bad_ones(api: RunningServer):
    storage = api.core.storage
    stored = storage.save("route-0.png", PNG)
    url = api.url + storage.url(stored.path, stored.expires)
    got = httpx.get(url)
    assert got.status_code == 200 and got.content == PNG
    assert got.headers["content-type"] == "image/png"
    assert got.headers["cache-control"] == "private, max-age=3600"

    path, expires, sig = _query(url)
    past = int(time.time()) - 5
    expired = api.url + storage.url(stored.path, past)
    for bad in (
        f"{api.url}/files/{path}?expires={expires}&sig={'0' * 32}",
        f"{api.url}/files/{path}?expires={int(expires) + 1}&sig={sig}",
        expired,
        f"{api.url}/files/{path}",
    ):
        r = httpx.get(bad)
        assert r.status_code == 403, bad
        assert r.json()["error"]["code"] == "url_invalid"
    storage.delete(stored.path)
    gone = httpx.get(url)
    assert gone.status_code == 403 and gone.json()["error"]["code"] == "url_invalid"


class MemoryStorage:
    """A Storage that is no folder at all: files in a dict, 'signatures' the path and
    expiry hashed, and optionally a redirect to an outside URL instead of the bytes (as
    an object store would answer)."""

    def __init__(self, redirect_base: str | None = None):
        self.files: dict[str, bytes] = {}
        self.redirect_base = redirect_base
        self.ttl_seconds = 60
        self.downloads: list[str] = []

    def save(self, name: str, data: bytes) -> StoredFile:
        self.files[f"mem/{name}"] = data
        return StoredFile(f"mem/{name}", int(time.time()) + self.ttl_seconds)

    def read(self, path: str) -> bytes:
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path]

    def delete(self, path: str) -> None:
        self.files.pop(path, None)

    @staticmethod
    def _sig(path: str, expires: int) -> str:
        return hashlib.sha256(f"{path}|{expires}".encode()).hexdigest()[:16]

    def url(self, path: str, expires: int) -> str:
        return f"/files/{path}?expires={expires}&sig={self._sig(path, expires)}"

    def verify(self, path: str, expires: str | None, sig: str | None) -> str | None:
        ok = expires and expires.isdigit() and sig == self._sig(path, int(expires))
        return path if ok and int(expires) >= time.time() and path in self.files else None

    def download(self, path: str) -> Download:
        self.downloads.append(path)
        if self.redirect_base:
            return Download("image/png", redirect=f"{self.redirect_base}/{path}")
        return Download("image/png", data=self.read(path))

    def sweep(self, now: float | None = None) -> int:
        return 0


def test_file_route_asks_the_storage_for_bytes_or_a_redirect(api: RunningServer):
    memory = MemoryStorage()
    assert isinstance(memory, Storage)
    api.core.storage = memory
    stored = memory.save("a.png", b"from memory")
    got = httpx.get(api.url + memory.url(stored.path, stored.expires))
    assert got.status_code == 200 and got.content == b"from memory"
    assert memory.downloads == [stored.path]
    assert httpx.get(f"{api.url}/files/{stored.path}?expires=1&sig=x").status_code == 403

    memory.redirect_base = "https://bucket.example.test/signed"
    moved = httpx.get(api.url + memory.url(stored.path, stored.expires))
    assert moved.status_code == 307
    assert moved.headers["location"] == f"https://bucket.example.test/signed/{stored.path}"
