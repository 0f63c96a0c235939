"""Image files in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, R2, OSS, ...).

Objects live under `{prefix}/{YYYYMMDD}/{name}`, the local storage's day folders, so a
local deployment's files copy over with the same paths. Clients get either presigned S3
GET URLs (absolute; they expire when a pixgate link would), or, with `public_url` set
(a CDN in front of the bucket), pixgate's own signed `/files/...` links, which the file
route answers with a redirect to `public_url/<key>`. boto3 is imported only here, when an
S3 storage is made, so API-only installs without it still import pixgate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pixgate.spec.storage import StorageSpec
from pixgate.storage.base import Download, StoredFile, media_type
from pixgate.storage.signing import UrlSigner

__all__ = ["PRESIGN_MAX_SECONDS", "S3Storage", "make_client"]

PRESIGN_MAX_SECONDS = 7 * 24 * 3600  # SigV4's longest presigned URL
_DOWNLOAD_REDIRECT_SECONDS = 300  # the presigned URL the /files route redirects to
_MISSING = {"404", "NoSuchKey", "NotFound"}
_DAY = timedelta(days=1)


def make_client(spec: StorageSpec) -> Any:
    """A boto3 S3 client for `spec` (thread-safe; one per storage). ValueError when boto3
    is not installed or the key's environment variables are not set."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ValueError(
            "[storage] backend = \"s3\" needs boto3: pip install 'pixgate[s3]'"
        ) from exc
    credentials = spec.credentials()
    keys = {}
    if credentials is not None:
        keys = {"aws_access_key_id": credentials[0], "aws_secret_access_key": credentials[1]}
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": spec.addressing_style},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        # S3-compatible servers do not all take the newer default checksums
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=spec.endpoint_url, region_name=spec.region, config=config, **keys
    )


def is_missing(exc: Exception) -> bool:
    """Whether a botocore ClientError says the object (or key) does not exist."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in _MISSING or status == "404"


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    return ClientError


class S3Storage:
    """The Storage of deployments whose API nodes and workers share a bucket instead of a
    volume. `client` is a boto3 S3 client (default: one made from `spec`)."""

    def __init__(self, spec: StorageSpec, secret: bytes, ttl_seconds: int, client: Any = None):
        if spec.bucket is None:
            raise ValueError('[storage] backend = "s3" needs bucket')
        self.spec = spec
        self.bucket = spec.bucket
        self.prefix = spec.prefix
        self.public_url = spec.public_url
        self.ttl_seconds = ttl_seconds
        self.client = client if client is not None else make_client(spec)
        self._signer = UrlSigner(secret)
        self._client_error = _client_error()

    # --- keys ------------------------------------------------------------------------------
    def key(self, path: str) -> str:
        """The object key of a storage path ('YYYYMMDD/name'); ValueError for a path that
        is not one of ours (absolute, '..', empty segments, backslashes)."""
        parts = path.split("/")
        if not path or "\\" in path or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a storage path: {path!r}")
        return f"{self.prefix}/{path}" if self.prefix else path

    def _root(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    # --- the protocol ----------------------------------------------------------------------
    def save(self, name: str, data: bytes) -> StoredFile:
        now = time.time()
        path = f"{time.strftime('%Y%m%d', time.gmtime(now))}/{name}"
        self.client.put_object(
            Bucket=self.bucket, Key=self.key(path), Body=data, ContentType=media_type(path)
        )
        return StoredFile(path=path, expires=math.ceil(now + self.ttl_seconds))

    def read(self, path: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key(path))
        except ValueError as exc:
            raise FileNotFoundError(path) from exc
        except self._client_error as exc:
            if is_missing(exc):
                raise FileNotFoundError(path) from exc
            raise
        with obj["Body"] as body:
            return body.read()

    def delete(self, path: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(path))
        except ValueError:
            return  # not one of ours: nothing to delete
        except self._client_error as exc:
            if not is_missing(exc):
                raise

    def exists(self, path: str) -> bool:
        """Whether the object is there (a HEAD request)."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(path))
        except ValueError:
            return False
        except self._client_error as exc:
            if is_missing(exc):
                return False
            raise
        return True

    def url(self, path: str, expires: int) -> str:
        """pixgate's '/files/...' link with `public_url` set; otherwise an absolute
        presigned S3 URL that stops working at `expires` (at most 7 days out; SigV4's
        limit; at least a second)."""
        if self.public_url is not None:
            return self._signer.url(path, expires)
        seconds = max(1, min(PRESIGN_MAX_SECONDS, math.ceil(expires - time.time())))
        return self.presigned(path, seconds)

    def presigned(self, path: str, seconds: int) -> str:
        """A GET URL for the object, valid `seconds` from now."""
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(path)},
            ExpiresIn=seconds,
        )

    def verify(self, path: str, expires: str | None, sig: str | None) -> str | None:
        """For pixgate '/files/...' links (always so with `public_url`; without it, links
        handed out before the switch from local disk): signature, expiry, then a HEAD."""
        if not self._signer.valid(path, expires, sig):
            return None
        return path if self.exists(path) else None

    def download(self, path: str) -> Download:
        """A redirect: to `public_url/<key>`, or to a short-lived presigned URL."""
        if not self.exists(path):
            raise FileNotFoundError(path)
        if self.public_url is not None:
            target = f"{self.public_url}/{self.key(path)}"
        else:
            target = self.presigned(path, _DOWNLOAD_REDIRECT_SECONDS)
        return Download(media_type(path), redirect=target)

    def sweep(self, now: float | None = None) -> int:
        """Delete what is older than the TTL: day folders that ended before the cutoff as a
        whole, and in the day the cutoff falls in, objects modified before it. Objects
        outside day folders are left alone."""
        cutoff = datetime.fromtimestamp(
            (now if now is not None else time.time()) - self.ttl_seconds, UTC
        )
        removed = 0
        for day_prefix, day in self._days():
            if day > cutoff:
                continue  # started after the cutoff: nothing in it has expired
            whole = day + _DAY <= cutoff
            doomed = [
                obj["Key"]
                for obj in self._objects(day_prefix)
                if whole or obj["LastModified"] < cutoff
            ]
            removed += self._delete_keys(doomed)
        return removed

    # --- listing ---------------------------------------------------------------------------
    def _days(self) -> Iterator[tuple[str, datetime]]:
        """(key prefix, start of day in UTC) of each day folder under the prefix."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._root(), Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                folder = common["Prefix"][len(self._root()) :].rstrip("/")
                try:
                    day = datetime.strptime(folder, "%Y%m%d").replace(tzinfo=UTC)
                except ValueError:
                    continue  # not a day folder of ours
                yield common["Prefix"], day

    def _objects(self, prefix: str) -> Iterator[dict]:
        """Every object under `prefix` (paginated)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            yield from page.get("Contents", [])

    def _delete_keys(self, keys: list[str]) -> int:
        """Delete `keys`, 1000 (S3's limit) a request; returns how many went."""
        removed = 0
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            answer = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"S3 refused to delete {len(errors)} object(s) in bucket {self.bucket}: "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}"
                )
            removed += len(batch)
        return removed
