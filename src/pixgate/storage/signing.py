"""pixgate's own signed, expiring file URLs ('/files/<path>?expires=..&sig=..'), shared by
the storages whose links go through pixgate's file route (local disk, S3 behind a CDN)."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode


class UrlSigner:
    """HMAC-SHA256 over the path and expiry, truncated to 32 hex digits: the format every
    link handed out so far has, so changing storage never invalidates one."""

    def __init__(self, secret: bytes):
        self.secret = secret

    def sign(self, path: str, expires: int) -> str:
        msg = f"{path}\n{expires}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()[:32]

    def url(self, path: str, expires: int) -> str:
        """The URL path (no scheme or host) for `path` until `expires`."""
        query = urlencode({"expires": expires, "sig": self.sign(path, expires)})
        return f"/files/{path}?{query}"

    def valid(self, path: str, expires: str | None, sig: str | None) -> bool:
        """Whether the URL's signature matches and it has not expired."""
        if not expires or not sig or not expires.isdigit():
            return False
        if not hmac.compare_digest(self.sign(path, int(expires)), sig):
            return False
        return int(expires) >= time.time()
