"""The Storage seam: where generated and uploaded images live, and how clients fetch them.

Everything above `storage/` talks to this protocol only, so a deployment can keep images
in a local folder or in an object store without the worker, the dialects or the file route
knowing which. Clients get a pixgate URL (`/files/<path>?expires=..&sig=..`) that
expires (or, from an object store without a CDN in front, its own presigned URL); the file
route checks it through `verify` and then asks `download` for what to send: the bytes, or
(for an object store) a URL to redirect to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol, runtime_checkable

FORMATS = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}
_MEDIA_BY_SUFFIX = {
    ".png": FORMATS["png"][1],
    ".jpg": FORMATS["jpeg"][1],
    ".jpeg": FORMATS["jpeg"][1],
    ".webp": FORMATS["webp"][1],
}


def media_type(path: str) -> str:
    """The Content-Type a stored file is served with, from its extension."""
    return _MEDIA_BY_SUFFIX.get(PurePosixPath(path).suffix.lower(), "application/octet-stream")


@dataclass(frozen=True)
class StoredFile:
    path: str  # the storage's name for the file, always with forward slashes
    expires: int  # unix time after which the URL is refused and the file swept


@dataclass(frozen=True)
class Download:
    """What the file route answers a valid URL with: `data` to send as the body, or
    `redirect` to a URL the storage itself serves (an object store's presigned URL)."""

    media_type: str
    data: bytes | None = None
    redirect: str | None = None


@runtime_checkable
class Storage(Protocol):
    """Images by path: saved by workers and dialects, read back for base64 responses and
    marked copies, served through signed expiring URLs, swept once they expire."""

    @property
    def ttl_seconds(self) -> int:
        """How long a saved file (and so its URL) lives."""
        ...

    def save(self, name: str, data: bytes) -> StoredFile:
        """Store `data` (`name` carries the extension); returns its path and expiry."""
        ...

    def read(self, path: str) -> bytes:
        """The file's bytes; FileNotFoundError when there is no such file."""
        ...

    def delete(self, path: str) -> None:
        """Remove the file; a missing file is not an error."""
        ...

    def url(self, path: str, expires: int) -> str:
        """The signed URL path ('/files/...?expires=..&sig=..') a client fetches the file
        with until `expires`; the caller puts the public base URL in front. An object
        store may answer an absolute URL instead (a presigned one), used as it is."""
        ...

    def verify(self, path: str, expires: str | None, sig: str | None) -> str | None:
        """`path` if the URL's signature is right, it has not expired and the file exists;
        None otherwise (the file route answers 403)."""
        ...

    def download(self, path: str) -> Download:
        """What to answer a verified URL with; FileNotFoundError if it vanished since."""
        ...

    def sweep(self, now: float | None = None) -> int:
        """Delete files older than their lifetime; returns how many were removed."""
        ...
