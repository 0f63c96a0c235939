"""Image files in a local folder, served through HMAC-signed expiring URLs."""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

from pixgate.storage.base import FORMATS, Download, StoredFile, media_type
from pixgate.storage.signing import UrlSigner

__all__ = ["FORMATS", "LocalStorage", "StoredFile"]


class LocalStorage:
    """The Storage of the embedded deployment (and of scaled ones sharing a volume):
    files under `root` in one folder per day, served by pixgate's own file route."""

    def __init__(self, root: Path, secret: bytes, ttl_seconds: int):
        self.root = root.resolve()
        self.secret = secret
        self._signer = UrlSigner(secret)
        self.ttl_seconds = ttl_seconds
        self.root.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, data: bytes) -> StoredFile:
        """Write `data` under a dated folder, atomically (readers never see half a file)."""
        now = time.time()
        rel = f"{time.strftime('%Y%m%d', time.gmtime(now))}/{name}"
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return StoredFile(path=rel, expires=math.ceil(now + self.ttl_seconds))

    def read(self, path: str) -> bytes:
        try:
            return self._resolve(path).read_bytes()
        except (ValueError, IsADirectoryError) as exc:
            raise FileNotFoundError(path) from exc

    def delete(self, path: str) -> None:
        # outside the root, or a folder: nothing of ours to delete
        with contextlib.suppress(ValueError, IsADirectoryError):
            self._resolve(path).unlink(missing_ok=True)

    def _sign(self, rel: str, expires: int) -> str:
        return self._signer.sign(rel, expires)

    def url(self, path: str, expires: int) -> str:
        return self._signer.url(path, expires)

    def verify(self, path: str, expires: str | None, sig: str | None) -> str | None:
        if not self._signer.valid(path, expires, sig):
            return None
        try:
            found = self._resolve(path)
        except ValueError:
            return None
        return path if found.is_file() else None

    def download(self, path: str) -> Download:
        return Download(media_type(path), data=self.read(path))

    def _resolve(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError("path escapes the storage root")
        return path

    def sweep(self, now: float | None = None) -> int:
        cutoff = (now if now is not None else time.time()) - self.ttl_seconds
        removed = 0
        for path in self.root.rglob("*"):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        for folder in sorted(self.root.glob("*/"), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return removed
