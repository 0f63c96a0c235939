"""Where images live (the Storage seam): `make_storage` picks the implementation from the
settings, and everything above this package types against `Storage` only."""

from __future__ import annotations

from pixgate.settings import Settings
from pixgate.storage.base import Download, Storage, StoredFile
from pixgate.storage.local import LocalStorage

__all__ = ["Download", "Storage", "StoredFile", "make_storage"]


def make_storage(settings: Settings, secret: bytes) -> Storage:
    """The deployment's storage; `secret` signs its URLs (the server's signing secret, the
    same on every API node so any node accepts any node's links): the data dir's files
    folder, or with `[storage] backend = "s3"` a bucket (needs boto3: `pixgate[s3]`)."""
    if settings.storage.backend == "s3":
        from pixgate.storage.s3 import S3Storage

        return S3Storage(settings.storage, secret, settings.url_ttl_seconds)
    return LocalStorage(settings.files_dir, secret, settings.url_ttl_seconds)
