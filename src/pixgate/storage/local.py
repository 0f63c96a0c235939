"""Image files on local disk, served through HMAC-signed expiring URLs."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

FORMATS = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}


def load_or_create_secret(data_dir: Path) -> bytes:
    """The signing secret, created once per data dir (kept across restarts so old URLs
    stay valid). Scaled deployments share one via PIXGATE_SIGNING_SECRET."""
    path = data_dir / "signing.key"
    if path.is_file():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


@dataclass(frozen=True)
class StoredFile:
    path: str  # relative to the files dir, always with forward slashes
    expires: int  # unix time after which the URL is refused and the file swept


class LocalStorage:
    def __init__(self, root: Path, secret: bytes, ttl_seconds: int):
        self.root = root.resolve()
        self.secret = secret
        self.ttl = ttl_seconds
        self.root.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, data: bytes) -> StoredFile:
        """Write `data` under a dated folder; `name` already carries the extension."""
        now = time.time()
        rel = f"{time.strftime('%Y%m%d', time.gmtime(now))}/{name}"
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return StoredFile(path=rel, expires=math.ceil(now + self.ttl))

    def read(self, rel: str) -> bytes:
        return self._resolve(rel).read_bytes()

    def _sign(self, rel: str, expires: int) -> str:
        msg = f"{rel}\n{expires}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()[:32]

    def signed_path(self, rel: str, expires: int) -> str:
        """'/files/<rel>?expires=..&sig=..' to put after the public base URL."""
        query = urlencode({"expires": expires, "sig": self._sign(rel, expires)})
        return f"/files/{rel}?{query}"

    def verify(self, rel: str, expires: str | None, sig: str | None) -> Path | None:
        """The file's path if the signature is right and not expired, else None."""
        if not expires or not sig or not expires.isdigit():
            return None
        if not hmac.compare_digest(self._sign(rel, int(expires)), sig):
            return None
        if int(expires) < time.time():
            return None
        try:
            path = self._resolve(rel)
        except ValueError:
            return None
        return path if path.is_file() else None

    def _resolve(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError("path escapes the storage root")
        return path

    def sweep(self, now: float | None = None) -> int:
        """Delete files older than the URL lifetime; returns how many were removed."""
        cutoff = (now if now is not None else time.time()) - self.ttl
        removed = 0
        for path in self.root.rglob("*"):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        for folder in sorted(self.root.glob("*/"), reverse=True):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return removed
